"""Leaving and entering the project: the file formats other systems use.

- `safetensors`: a reader and writer for the safetensors format, in numpy;
- `gpt2`: GPT-2 checkpoints in the layout of Hugging Face ``transformers``;
- `hf_tokenizer`: the tokenizer as a Hugging Face ``tokenizer.json``;
- `deepseek`: Multi-Head Latent Attention weights in DeepSeek's fused layout.
"""
