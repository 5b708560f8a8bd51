"""The built-in mixers, one file each (archs/mixer_registry.py `BUILTINS` names them), and the layer
bodies a family shares: attention_layer.py (attention, swa), delta_layer.py (deltanet, gated_deltanet,
kda, gated_deltaproduct), gated_linear_layer.py (linear_attention, retnet, gla). Each mixer's recurrence
lives in archs/ops/ beside its sequential reference."""
