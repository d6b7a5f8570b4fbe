"""Source-adversarial head: a gradient-reversal branch that predicts the film's source.

Domain-adversarial training (Ganin & Lempitsky, "Unsupervised domain adaptation by
backpropagation", ICML 2015): a small branch reads the head's last hidden layer and learns to
tell the film's source; between the two, a gradient-reversal layer passes activations forward
unchanged and multiplies the gradient flowing back by ``-weight``. The branch gets better at
naming the source while the head's layers are pushed to make that impossible, so the
representation the classifier reads carries less of the hospital.

On sets like cxr3 the source and the class are confounded (every COVID-19 film comes from two
sources, every Viral film from two others): an adversary that predicted the source from the
hidden layer alone would also erase the class. So the branch also gets the film's true class
(one-hot) as input: knowing the class, only what the hidden layer adds about the source is
worth learning, and only that is reversed (a class-conditional adversary).

The branch itself (:class:`cxrlib.training.adversary.SourceAdversary`, on the head's last hidden
layer here) is shared with adversarial fine-tuning through the backbone (``TrainConfig.
adversarial``); it exists only while the head trains (:func:`cxrlib.training.head_fit.
fit_head_compiled` takes it as ``extra``) and is no part of any saved model.

Measured, not promised: leave-one-source-out on cxr3 (MobileNetV2 head, 5 sources) gave an
expected accuracy at an unseen source of 0.566 with the plain head, 0.540 / 0.565 / 0.151 with
this branch at weight 0.1 / 0.3 / 1.0. It does not help there (the missing populations, adult
normal films above all, are absent from every training fold, and no invariance among the other
sources brings them back), so the head-only branch is not a training option (the fine-tune through
the backbone is: it can change what the frozen features carry); :func:`cxrlib.audit.loso.
leave_one_source_out` (``adversarial=``) and the Audit page measure it on any dataset.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from cxrlib.training.adversary import SourceAdversary, head_joint

__all__ = ["SourceAdversary", "adversary"]


def adversary(sources: Sequence[str], weight: float):
    """``extra(head, rows, y_train)`` for :func:`cxrlib.training.head_fit.fit_head`: the
    branch of weight ``weight`` on the head's last hidden layer and the sources
    (``sources[rows]``) of the head's training rows."""
    sources = np.asarray(sources)

    def make(head, rows, y_train):
        return SourceAdversary(head_joint(head), list(sources[rows]), y_train, weight)

    return make
