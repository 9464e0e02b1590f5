"""The pretraining methods by name. A new method is one module with a `PretextMethod` subclass, added here."""

from nbstudy.pretrain.barlow_twins import BarlowTwins
from nbstudy.pretrain.byol import BYOL
from nbstudy.pretrain.jigmag import Jigmag
from nbstudy.pretrain.jigsaw import Jigsaw
from nbstudy.pretrain.moco import MoCo
from nbstudy.pretrain.rotation import Rotation
from nbstudy.pretrain.simclr import SimCLR
from nbstudy.pretrain.simsiam import SimSiam
from nbstudy.pretrain.vicreg import VICReg

# The study's four, then the two-view methods of its follow-up (arXiv 2401.07990).
METHODS = {cls.name: cls for cls in (SimCLR, Rotation, Jigsaw, Jigmag, BarlowTwins, BYOL, MoCo, SimSiam, VICReg)}
