"""The pretraining methods by name. A new method is one module with a `PretextMethod` subclass, added here."""

from nbstudy.pretrain.jigmag import Jigmag
from nbstudy.pretrain.jigsaw import Jigsaw
from nbstudy.pretrain.rotation import Rotation
from nbstudy.pretrain.simclr import SimCLR

METHODS = {cls.name: cls for cls in (SimCLR, Rotation, Jigsaw, Jigmag)}
