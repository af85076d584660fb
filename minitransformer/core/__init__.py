"""The shared mechanics every stage is built from.

- `nn`: linear layers, norms, activations, softmax and cross-entropy, dropout,
  each as a forward/backward pair of plain functions;
- `config`: the model's frozen, validated configuration with named presets;
- `registry`: variants of a stage by name (the config validates names through it);
- `tree`: the parameter tree and its dotted names;
- `fileio`: atomic writes;
- `values`: what argument checks count as an int or a number;
- `memory`: reuse of freed numpy temporaries.

Nothing here imports a stage: dependencies point from the stages to the mechanics.
"""
