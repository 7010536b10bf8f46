"""Model plugins.

Each model is registered in the ``senland_geo.models`` entry-point group as a builder::

    build(in_channels: int, num_classes: int, **options) -> torch.nn.Module

Single-image models take ``(B, C, H, W)``; time-series models (attribute
``temporal = True`` on the returned module) take ``(B, T, C, H, W)``. In eval mode every
model returns logits ``(B, K, H, W)``; in train mode a model with deep supervision may
return a list ``[main_logits, aux_logits...]`` (all ``(B, K, H, W)``).
"""
