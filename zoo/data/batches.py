"""Batches for the training loop, shuffled reproducibly from ``(seed, epoch)`` alone.

In-memory splits are indexed batch by batch straight from the uint8 tensor, kept on the GPU when
training there: no DataLoader, no per-image Python work. Streamed splits go through persistent
DataLoader workers. With several processes each rank takes its share of every global batch, so
the global batches are the same as in a single-process run. Iterable streams split themselves
over processes and workers; their batches are cut to the local batch size here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from zoo.data.splits import (
    ImageTensors,
    is_stream,
    label_tensor,
    split_decoded,
    split_labels,
)
from zoo.errors import ZooError

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator that orders epoch ``epoch``: the same on every rank and on resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _order(
    n: int, labels: torch.Tensor | None, seed: int, epoch: int, shuffle: bool, balanced: bool
) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n)
    g = epoch_generator(seed, epoch)
    if balanced and labels is not None:
        counts = torch.bincount(labels)
        weights = (1.0 / counts.clamp_min(1).double())[labels]
        return torch.multinomial(weights, n, replacement=True, generator=g)
    return torch.randperm(n, generator=g)


def steps_for(n: int, batch_size: int, drop_last: bool) -> int:
    if drop_last and n >= batch_size:
        return n // batch_size
    return -(-n // batch_size)


class TensorBatches:
    """Batches indexed from an in-memory split (on ``device`` if it fits there)."""

    def __init__(
        self,
        data: ImageTensors,
        batch_size: int,
        device: torch.device,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        balanced: bool = False,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.n = len(data)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.balanced, self.rank, self.world = seed, balanced, rank, world
        self.labels_cpu = data.labels
        store = device if _fits(data, device) else torch.device("cpu")
        self.images = data.images.to(store)
        self.labels = data.labels.to(store)
        if store.type == "cpu" and device.type == "cuda":
            self.images, self.labels = self.images.pin_memory(), self.labels.pin_memory()
        self.store, self.device = store, device
        self.steps = steps_for(self.n, batch_size, drop_last)

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int) -> Iterator[Batch]:
        order = _order(self.n, self.labels_cpu, self.seed, epoch, self.shuffle, self.balanced)
        if self.steps * self.batch_size < self.n and self.drop_last:
            order = order[: self.steps * self.batch_size]
        order = order.to(self.store)
        for step in range(self.steps):
            # Rank r takes every world-th item of the global batch.
            idx = order[step * self.batch_size : (step + 1) * self.batch_size][
                self.rank :: self.world
            ]
            x = self.images.index_select(0, idx)
            y = self.labels.index_select(0, idx)
            if self.store != self.device:
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
            yield x, y


def _fits(data: ImageTensors, device: torch.device) -> bool:
    """Hold the split on the GPU when it takes under a quarter of the free memory."""
    if device.type != "cuda":
        return device.type != "mps" or data.images.numel() < 2**30
    free, _ = torch.cuda.mem_get_info(device)
    return data.images.numel() < free // 4


def _collate(items: list[Any]) -> Batch | None:
    """Stack ``(image, label)`` items, dropping unreadable ones (None); label sets become
    int64 ``[B, M]`` padded with -1 (``label_tensor``), which the task encodes."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    return torch.stack([it[0] for it in items]), label_tensor([it[1] for it in items])


def _loader(
    dataset: Any, batch: int, device: torch.device, workers: int, sampler: Any = None
) -> torch.utils.data.DataLoader:
    """Persistent, pinned, prefetching DataLoader workers (``sampler``: an indexable dataset's
    order; a stream orders itself)."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


class _EpochSampler(torch.utils.data.Sampler[int]):
    """Indices of this rank's share of each global batch, for the current epoch."""

    def __init__(self, owner: LoaderBatches) -> None:
        self.owner = owner

    def __len__(self) -> int:
        return self.owner.steps * self.owner.local_batch

    def __iter__(self) -> Iterator[int]:
        o = self.owner
        order = _order(o.n, o.labels, o.seed, o.current_epoch, o.shuffle, o.balanced)
        for step in range(o.steps):
            yield from order[step * o.batch_size : (step + 1) * o.batch_size][
                o.rank :: o.world
            ].tolist()


class LoaderBatches:
    """Batches streamed through persistent, pinned, prefetching DataLoader workers."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        device: torch.device,
        *,
        shuffle: bool,
        drop_last: bool,
        workers: int,
        seed: int = 0,
        balanced: bool = False,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.dataset, self.n = dataset, len(dataset)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.balanced, self.rank, self.world = seed, balanced, rank, world
        self.local_batch = max(1, batch_size // world)
        labels = split_labels(dataset) if balanced else None
        self.labels = torch.as_tensor(labels) if labels is not None else None
        self.steps = steps_for(self.n, batch_size, drop_last)
        self.device = device
        self.current_epoch = 0
        self.loader = _loader(dataset, self.local_batch, device, workers, _EpochSampler(self))

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int) -> Iterator[Batch]:
        self.current_epoch = epoch
        for batch in self.loader:
            if batch is None:
                if self.world > 1:
                    # Skipping the step here alone would leave the other processes waiting in
                    # its gradient all-reduce (torchrun stops them all on this error instead).
                    raise ZooError(
                        f"process {self.rank}: every image of a batch was unreadable; a "
                        "distributed run needs a dataset that replaces unreadable images (as "
                        "the folder dataset does) so that every process trains every step"
                    )
                continue
            x, y = batch
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def decoded(self) -> int | None:
        """Files the dataset decoded so far (None if it does not count them)."""
        return split_decoded(self.dataset)


class StreamBatches:
    """Batches of an iterable stream through persistent DataLoader workers.

    The stream gives each process and worker its own share (as WebDataset's
    ``split_by_node``/``split_by_worker`` do) and orders an epoch from ``set_epoch``. Workers'
    batches are cut here to the local batch size; in training every process takes exactly
    ``steps`` batches of an epoch (a share that runs short is read again from its start, a
    longer one is cut), so the processes of a distributed run stay in step; a stream shorter
    than one global batch is one batch of its own length.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        device: torch.device,
        *,
        shuffle: bool,
        drop_last: bool,
        workers: int,
        seed: int = 0,
        balanced: bool = False,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if balanced:
            raise ZooError("--balanced needs a dataset it can index: a stream is read in order")
        self.dataset, self.n = dataset, len(dataset)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.rank, self.world, self.device = rank, world, device
        self.local_batch = max(1, batch_size // world)
        self.steps = steps_for(self.n, batch_size, drop_last)
        # Items each process takes in a training epoch: whole batches, or a stream shorter
        # than one global batch once.
        whole = drop_last and self.n >= batch_size
        self.quota = self.steps * self.local_batch if whole else max(1, -(-self.n // world))
        self.loader = _loader(dataset, self.local_batch, device, workers)

    def __len__(self) -> int:
        return self.steps

    def _read(self, epoch: int) -> Iterator[Batch]:
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        for batch in self.loader:
            if batch is not None:
                yield batch

    def epoch(self, epoch: int) -> Iterator[Batch]:
        if not self.drop_last:  # evaluation: every item of this process's share, once
            for x, y in self._read(epoch):
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        held, given = 0, 0
        while given < self.quota:
            read_any = False
            for x, y in self._read(epoch):
                read_any = True
                xs.append(x)
                ys.append(y)
                held += x.shape[0]
                while given < self.quota and held >= min(self.local_batch, self.quota - given):
                    xb, yb = torch.cat(xs), torch.cat(ys)
                    k = min(self.local_batch, self.quota - given)
                    xs, ys, held = [xb[k:]], [yb[k:]], held - k
                    given += k
                    yield (
                        xb[:k].to(self.device, non_blocking=True),
                        yb[:k].to(self.device, non_blocking=True),
                    )
                if given >= self.quota:
                    break
            if not read_any:
                raise ZooError(
                    f"process {self.rank}: its share of the stream holds no readable image"
                )

    def decoded(self) -> int | None:
        return split_decoded(self.dataset)


def make_batches(
    split: Any,
    batch_size: int,
    device: torch.device,
    *,
    train: bool,
    workers: int,
    seed: int,
    balanced: bool = False,
    rank: int = 0,
    world: int = 1,
) -> TensorBatches | LoaderBatches | StreamBatches:
    """The batch source for a split: indexed tensors if in memory, a DataLoader over an
    indexable dataset, or a stream's own order."""
    kwargs: dict[str, Any] = dict(
        shuffle=train,
        drop_last=train,
        seed=seed,
        balanced=balanced and train,
        rank=rank,
        world=world,
    )
    if isinstance(split, ImageTensors):
        return TensorBatches(split, batch_size, device, **kwargs)
    if is_stream(split):
        return StreamBatches(split, batch_size, device, workers=workers, **kwargs)
    return LoaderBatches(split, batch_size, device, workers=workers, **kwargs)
