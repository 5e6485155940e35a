"""KDSR: correlation distillation from modality encoders into recommender item embeddings.

Teacher (``teacher``, ``autoencoder``, ``scoring``, ``quantize``, ``cache``), student
losses (``student``), pair selection (``pairs``), the asynchronous LR schedule
(``schedule``), the modality-forgetting monitor (``monitor``), and the object the
training loop uses (``kdsr.KDSR`` from ``build_kdsr``). See docs/KDSR.md.
"""

from harness.kdsr.build import build_kdsr, teacher_spec
from harness.kdsr.kdsr import KDSR
from harness.kdsr.monitor import ForgettingMonitor, forgetting_pearson
from harness.kdsr.quantize import QUANTIZERS, fit_codebook, nearest_code
from harness.kdsr.schedule import embedding_lr_factor
from harness.kdsr.scoring import SCORES
from harness.kdsr.student import StudentHeads, dissected_loss, holistic_loss, pair_mask
from harness.kdsr.teacher import Teacher, TeacherSpec, TeacherTable, fit_teacher

KDSRLoss = KDSR  # the name docs/ARCHITECTURE.md uses: KDSRLoss(teachers, cfg)

__all__ = [
    "KDSR",
    "QUANTIZERS",
    "SCORES",
    "ForgettingMonitor",
    "KDSRLoss",
    "StudentHeads",
    "Teacher",
    "TeacherSpec",
    "TeacherTable",
    "build_kdsr",
    "dissected_loss",
    "embedding_lr_factor",
    "fit_codebook",
    "fit_teacher",
    "forgetting_pearson",
    "holistic_loss",
    "nearest_code",
    "pair_mask",
    "teacher_spec",
]
