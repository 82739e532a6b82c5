"""Training of a class-conditional GAN (HamGAN, SAGAN or no context block): ``hamgan-train``.

    hamgan-train CONFIG --out DIR [--steps N] [dotted.key=value ...]
    torchrun --nproc_per_node 8 -m hamgan.train CONFIG --out DIR          (data parallel, see hamgan.distributed)

One step is ``train.d_steps`` discriminator updates followed by one generator update (reference §2)::

    D: minimise L_D(D(x, y), D(G(z, y'), y'))    x, y from the data; z ~ N(0, I), y' uniform over the classes
    G: minimise L_G(D(G(z, y'), y'))

with the hinge (or non-saturating) loss of hamgan.losses and Adam per network (TTUR: lr_D = 4 lr_G). Every update
uses ``train.batch_size`` images in all, split over ranks and ``train.accumulate`` micro-batches.

Running the same command again resumes from the run folder's latest checkpoint, exactly (see ``state``).

The modules, in the order the data flows:

=============  =====================================================================================================
cli            ``hamgan-train``: arguments, process group and peer monitor around a Trainer, exit statuses
run_folder     the run's config, its lock, the checkpoint chosen by rank 0 for every rank, the consensus check
state          what a checkpoint holds (:meth:`Trainer.state_dict`), restoring it, random-number generators
stream         the data set (rank 0 builds it first) and the batches: uint8 to the device, flips there
precision      ``train.amp`` and ``train.tf32``, decided by rank 0 for every rank; the autocast context
loop           :class:`Trainer`: set-up, the D and G updates, the loop, its state dict
health         NaN/inf and stop flags read one step late (no per-step host sync), the NaN report, stop signals
window         what the loop sums between log lines: mean losses, speed, peak memory
compiled       ``train.compile``: the compiler of the training forwards and ``RUN/compile.json``
periodic       the sample grid and the periodic FID shared by all ranks
peers          heartbeats through the rendezvous store: a dead rank is named and the others stop
=============  =====================================================================================================

Run folder::

    config.yaml           the full resolved config (the run's config when resuming)
    train.lock            held by the live trainer (host, pid); see run_folder
    ckpt-<step>.pt        the last ``train.keep_last`` of the ``train.ckpt_every`` schedule, and newer ones written
                          on a stop signal or at the end;  ckpt-best.pt  the best by FID
    metrics.jsonl, wandb/ see hamgan.logger
    samples/step-<step>.png   fixed z, fixed classes (one row per class), EMA generator when enabled
    fid_ref.npz           the FID reference statistics computed from the training data (when not given)
    nan_report.json       written when a loss becomes NaN/inf (the run then stops, exit code 3)

SIGTERM (preemption) or Ctrl-C: the current step finishes, a checkpoint is written, exit code 128 + signal.
"""

from hamgan.train.cli import EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_WRITE_FAILED, main, parse_args, run
from hamgan.train.health import TrainingDiverged, TrainingStopped
from hamgan.train.loop import Trainer
from hamgan.train.peers import EXIT_PEER_LOST, PeerLost
from hamgan.train.periodic import GRID_CLASSES, GRID_COLUMNS
from hamgan.train.precision import amp_dtype
from hamgan.train.run_folder import LockError, check_config, resolve_config

__all__ = [
    "EXIT_BAD_INPUT", "EXIT_DIVERGED", "EXIT_PEER_LOST", "EXIT_WRITE_FAILED", "GRID_CLASSES", "GRID_COLUMNS",
    "LockError", "PeerLost", "Trainer", "TrainingDiverged", "TrainingStopped", "amp_dtype", "check_config", "main",
    "parse_args", "resolve_config", "run",
]
