"""Trains and evaluates a multi-task model: `python -m mtjax.main --config configs/nyud.py --workdir DIR`.

Config fields can be overridden with `--config.key=value` (e.g. `--config.dataset.data_dir=...`); the
loaded config is locked, so an unknown key is an error. Run one process per host on a multi-host
cluster: `jax.distributed.initialize()` is called when the environment says so (or with
`--distributed=true`).
"""

import os

from mtjax import runtime  # Before TensorFlow: quiets its C++ banners.

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mtjax import train  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints and TensorBoard summaries.")
flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "true", "false"],
    "Call jax.distributed.initialize(): auto = when --coordinator_address is given or a multi-process"
    " launcher is detected (JAX_COORDINATOR_ADDRESS, SLURM, Open MPI, multi-host Cloud TPU).",
)
flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, where the cluster is not auto-detected."
)
flags.DEFINE_integer("num_processes", None, "Number of processes, with --coordinator_address.")
flags.DEFINE_integer("process_id", None, "This process's index, with --coordinator_address.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])

_MULTI_PROCESS_ENV = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def _is_multi_process_launch() -> bool:
  """Whether the environment describes a multi-process job that jax.distributed can join."""
  if FLAGS.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    return True
  if any(int(os.environ.get(name, "1")) > 1 for name in _MULTI_PROCESS_ENV):
    return True
  return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # Progress (steps/s, ETA from CLU's ReportProgress), metrics and notes go to stdout.
  runtime.configure_logging()
  runtime.configure_devices()
  if FLAGS.distributed == "true" or (FLAGS.distributed == "auto" and _is_multi_process_launch()):
    jax.distributed.initialize(
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
    )
  logging.info("%s", runtime.describe_devices())
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
