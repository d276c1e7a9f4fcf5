"""How training is spread over devices and machines: TensorFlow's own `tf.distribute` strategies.

    auto          one device; MirroredStrategy when several GPUs are visible
    mirrored      MirroredStrategy: one model copy per local GPU (or the CPU), gradients summed
    multi_worker  MultiWorkerMirroredStrategy: one process per machine, the cluster read from
                  the TF_CONFIG environment variable, gradients summed across machines

Batch sizes are global: each step's batch is split evenly across all replicas of all workers,
so the same params give the same optimisation on one device or on many (up to float rounding).
`check_batch_size` refuses, up front, batch sizes that Keras (3.15) cannot split that way.

The caller creates the strategy first (a multi-worker one must exist before TensorFlow runs
any op), builds and compiles the model inside `strategy.scope()`, and has every worker run
`fit` to its end (the workers sum their gradients at every step). Only the chief writes the
outputs: `is_chief(strategy)`; the others stop after `fit`.

TF_CONFIG for worker 0 of two machines (worker 1 has the same cluster and `"index": 1`):

    {"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}
"""

from __future__ import annotations

import json
import os

from fcnlab.core.errors import FcnlabError

STRATEGIES = ("auto", "mirrored", "multi_worker")

TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')


def training_strategy(name: str):
    """The `tf.distribute.Strategy` called `name` (one of STRATEGIES); see the module docstring."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise FcnlabError(f"train.strategy must be one of {', '.join(STRATEGIES)}, got {name!r}; "
                          "fix it in params.yaml")
    if name == "auto":
        several_gpus = len(tf.config.list_physical_devices("GPU")) > 1
        return tf.distribute.MirroredStrategy() if several_gpus else tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    cluster_task()  # a missing or malformed TF_CONFIG stops here with one line, not in TensorFlow
    try:
        return _multi_worker_strategy_for_keras()
    except RuntimeError as err:  # "Collective ops must be configured at program startup"
        raise FcnlabError(f"train.strategy multi_worker could not start ({err}); create the strategy "
                          "before any TensorFlow op runs, in a fresh process") from None


def check_batch_size(batch_size: int, strategy, key: str, **split_sizes: int) -> None:
    """Refuse a global batch size whose batches would not split well over the strategy's replicas.

    Two limits of Keras 3.15 and TensorFlow 2.21 that a single device never meets:
    - Keras averages the first batch of `fit` (and of its validation) over the replicas to learn
      its shapes, which fails unless every replica gets as many examples: 17 + 16 for a batch
      of 33 on two replicas fails. So `batch_size` (or a smaller split's size) must divide evenly.
    - The last batch of a split holds `size % batch_size` examples; fewer than the replicas
      leave one replica an empty batch, on which TensorFlow's CPU convolutions fail.
    `key` names the params key in messages (e.g. "cae.batch_size"); `split_sizes` gives the
    number of examples of each split that `fit` batches, e.g. train=1200, test=300.
    """
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return
    fix = (f"batch sizes are global: set {key} in params.yaml to a multiple of {replicas} that "
           f"leaves each split's last batch empty or at least {replicas} examples")
    if batch_size % replicas:
        raise FcnlabError(f"{key} is {batch_size}, which does not split evenly over the {replicas} replicas "
                          f"(GPUs or workers) of train.strategy; {fix}")
    for split, size in split_sizes.items():
        first, last = min(batch_size, size), size % batch_size
        if first % replicas or 0 < last < replicas:
            raise FcnlabError(f"{key} is {batch_size}: the {split} split's {size} examples would leave a batch of "
                              f"{last or first} that does not split evenly over the {replicas} replicas (GPUs or "
                              f"workers) of train.strategy; {fix}")


def _multi_worker_strategy_for_keras():
    """TensorFlow's MultiWorkerMirroredStrategy, with `reduce` accepting what Keras 3's `fit` passes.

    Keras 3 (checked with 3.15 on TF 2.21; keras-team/keras#20585) calls `strategy.reduce` with
    a nested (x, y) batch, and with `axis=0` on scalar logs such as the loss. MirroredStrategy
    accepts both; MultiWorkerMirroredStrategy raises. This subclass reduces each leaf of a nest
    on its own (as MirroredStrategy does) and a scalar across replicas only (`axis=None`, the
    only meaning `axis=0` can have for it). Everything else is TensorFlow's.
    """
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def reduce_leaf(leaf):
                if leaf is None:
                    return None
                rank = self.experimental_local_results(leaf)[0].shape.rank
                return super(MultiWorkerMirroredStrategy, self).reduce(
                    reduce_op, leaf, None if rank == 0 else axis)

            return tf.nest.map_structure(reduce_leaf, value)

    return MultiWorkerMirroredStrategy()


def is_chief(strategy=None) -> bool:
    """Whether this process writes the outputs: false only for a multi-worker run's other workers.

    A strategy other than MultiWorkerMirroredStrategy has one process, the chief. Otherwise
    (or without `strategy`) TF_CONFIG decides: its task is the chief if it is of type `chief`,
    or worker 0 of a cluster without a chief; no TF_CONFIG means a single process.
    """
    if strategy is not None:
        import tensorflow as tf

        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return True
    elif not os.environ.get("TF_CONFIG", "").strip():
        return True
    task_type, task_index, cluster = cluster_task()
    return task_type == "chief" or (task_type == "worker" and task_index == 0 and "chief" not in cluster)


def cluster_task() -> tuple[str, int, dict]:
    """(task type, task index, cluster) from TF_CONFIG, checked; FcnlabError saying what to set."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        _bad_tf_config("is not set")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        _bad_tf_config(f"is not valid JSON ({err})")
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        _bad_tf_config('has no "cluster" mapping of job names to "host:port" lists')
    for job, addresses in cluster.items():
        if job not in ("chief", "worker") or not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and ":" in a for a in addresses):
            _bad_tf_config(f'has cluster job {job!r} = {str(addresses)[:80]}; jobs must be "chief" (one address) '
                           'or "worker", each a non-empty list of "host:port" strings')
    if len(cluster.get("chief", [])) > 1:
        _bad_tf_config('lists more than one "chief"; list one, or none (worker 0 is then the chief)')
    if not isinstance(task, dict) or task.get("type") not in cluster:
        _bad_tf_config(f'has task {task!r}; "task" must name a job of the cluster as "type" '
                       '("worker" or "chief") and this process\'s "index" in that job\'s list')
    index = task.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        _bad_tf_config(f'has task index {index!r} for {len(cluster[task["type"]])} {task["type"]} '
                       "address(es); it must be this process's place in that list, from 0")
    return task["type"], index, cluster


def _bad_tf_config(problem: str):
    raise FcnlabError(f"train.strategy multi_worker needs the TF_CONFIG environment variable, which "
                      f"{problem}; set it on every machine, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}' "
                      "(same cluster everywhere, each machine its own index)")
