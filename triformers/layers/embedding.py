"""nn.Embedding that leaves a meta-device weight alone.

`from_pretrained` builds the model on the meta device and fills it from the checkpoint, so the random
init is wasted work there; for an embedding it is worse than wasted: `normal_` on a meta tensor goes
through torch's Python reference kernels, whose first use imports torch's compiler stack (~2 s).
"""

from __future__ import annotations

from torch import nn


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()
