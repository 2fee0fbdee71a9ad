"""Named training recipes (optimizer, schedule, batch, input size, augmentation).

* ``paper``: the Life Surgery Box paper's fine-tuning: SGD, learning rate 1e-3, momentum 0.95,
  weight decay 0.05; the learning rate is divided by 10 after 1500 and again after 2750 training
  examples. The paper does not state when it stopped; we stop after 4000 examples (or earlier,
  on validation AP, see ``patience``).
* ``widerface``: the WIDER FACE recipe of the original RetinaFace training (biubug6): SGD,
  learning rate 1e-3, momentum 0.9, weight decay 5e-4, divided by 10 at 76 % and 88 % of the
  epochs (190 and 220 of 250).

Both use batch 8, 640 px square inputs, frozen BatchNorm statistics (batches of 8 would drift
the shipped statistics), a frozen first convolution (it sees raw pixel values, about +-128,
so its gradients dwarf its tiny weights and one step at lr 1e-3 destroys it: measured, the
loss goes to NaN within 5 steps), no gradient clipping (``clip_grad``: an optional L2 norm
limit), and the augmentation of :mod:`.augment` with masks and caps on half the faces.
"""

from __future__ import annotations

import attrs

from .augment import AugmentConfig


@attrs.frozen
class Recipe:
    """``lr``, ``momentum``, ``weight_decay``: SGD; the learning rate is multiplied by ``gamma`` at each
    of ``milestones``, counted in training examples seen (``unit="examples"``) or as fractions of the
    epochs (``unit="fraction"``); training stops after ``epochs`` epochs or ``max_examples``
    examples, whichever comes first (``None``: no limit from it)."""

    name: str
    lr: float
    momentum: float
    weight_decay: float
    milestones: tuple[float, ...]
    unit: str = attrs.field(validator=attrs.validators.in_(("examples", "fraction")))
    gamma: float = 0.1
    epochs: int = 250
    max_examples: int | None = None
    batch_size: int = 8
    image_size: int = 640
    freeze_bn: bool = True
    freeze_stem: bool = True
    clip_grad: float | None = None
    augment: AugmentConfig = AugmentConfig()

    def lr_at(self, examples: int, epoch: int, epochs: int) -> float:
        """Learning rate after ``examples`` training examples, in (0-based) ``epoch`` of ``epochs``."""
        if self.unit == "examples":
            n = sum(examples >= m for m in self.milestones)
        else:
            n = sum(epoch >= round(m * epochs) for m in self.milestones)
        return self.lr * self.gamma ** n


RECIPES: dict[str, Recipe] = {
    "paper": Recipe("paper", 1e-3, 0.95, 0.05, (1500, 2750), "examples", epochs=1000, max_examples=4000),
    "widerface": Recipe("widerface", 1e-3, 0.9, 5e-4, (190 / 250, 220 / 250), "fraction", epochs=250),
}
