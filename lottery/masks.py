"""A validated container for the masks of K tickets over one model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch


class MaskError(ValueError):
    """Masks with non-binary values or shapes that do not match the model."""


class Masks(Mapping[str, torch.Tensor]):
    """Masks of K tickets: ``{layer: bool tensor (K, *weight_shape)}``.

    Parameters
    ----------
    masks : mapping of str to tensor or ndarray, shape (K, *weight_shape)
        Values must be 0/1 (bool, or numbers equal to 0 or 1).
    shapes : mapping of str to tuple of int, optional
        The model's prunable shapes; when given, layers and shapes must match exactly.
    """

    def __init__(
        self,
        masks: Mapping[str, torch.Tensor | np.ndarray],
        shapes: Mapping[str, tuple[int, ...]] | None = None,
    ):
        if not masks:
            raise MaskError("no masks given")
        data: dict[str, torch.Tensor] = {}
        k = None
        for name, m in masks.items():
            t = torch.as_tensor(m)
            if t.dtype != torch.bool:
                if t.is_floating_point() and not torch.isfinite(t).all():
                    raise MaskError(f"mask {name!r} holds NaN or inf")
                if not ((t == 0) | (t == 1)).all():
                    raise MaskError(f"mask {name!r} holds values other than 0 and 1")
                t = t != 0
            if t.ndim < 2:
                raise MaskError(f"mask {name!r} must have shape (K, *weight_shape), got {tuple(t.shape)}")
            if k is None:
                k = t.shape[0]
            elif t.shape[0] != k:
                raise MaskError(f"mask {name!r} has {t.shape[0]} tickets, others have {k}")
            data[name] = t
        if shapes is not None:
            missing = set(shapes) - set(data)
            extra = set(data) - set(shapes)
            if missing or extra:
                raise MaskError(
                    f"mask layers do not match the model: missing {sorted(missing)}, extra {sorted(extra)}"
                )
            for name, shape in shapes.items():
                if tuple(data[name].shape[1:]) != tuple(shape):
                    got = tuple(data[name].shape[1:])
                    raise MaskError(f"mask {name!r} has weight shape {got}, model has {tuple(shape)}")
        self._data = data
        self.k: int = int(k)

    @classmethod
    def ones(
        cls, shapes: Mapping[str, tuple[int, ...]], k: int = 1, device: str | torch.device = "cpu"
    ) -> Masks:
        """All-ones masks (the dense network) for ``k`` tickets."""
        return cls(
            {n: torch.ones((k, *s), dtype=torch.bool, device=device) for n, s in shapes.items()}, shapes
        )

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def ticket(self, k: int) -> dict[str, torch.Tensor]:
        """Masks of ticket ``k``: ``{layer: bool (*weight_shape)}``."""
        return {n: m[k] for n, m in self._data.items()}

    def numel(self) -> int:
        """Number of prunable weights of one ticket."""
        return sum(m[0].numel() for m in self._data.values())

    def counts(self) -> np.ndarray:
        """Surviving weights per ticket, shape (K,)."""
        return np.array(sum(m.flatten(1).sum(1).cpu().numpy() for m in self._data.values()))

    def sparsity(self) -> np.ndarray:
        """Fraction of prunable weights removed, per ticket, shape (K,)."""
        return 1.0 - self.counts() / self.numel()

    def union_count(self) -> int:
        """Weights kept by at least one ticket (the paper's RTL parameter count)."""
        return int(sum(m.any(0).sum().item() for m in self._data.values()))

    def to(self, device: str | torch.device) -> Masks:
        """The same masks on ``device``."""
        return Masks({n: m.to(device) for n, m in self._data.items()})

    def numpy(self) -> dict[str, np.ndarray]:
        """``{layer: bool ndarray (K, *weight_shape)}`` for the run format."""
        return {n: m.cpu().numpy() for n, m in self._data.items()}

    @staticmethod
    def stack(tickets: list[Mapping[str, torch.Tensor]]) -> Masks:
        """Stack single-ticket masks ``[{layer: (*shape)}] * K`` into one container."""
        names = list(tickets[0])
        return Masks({n: torch.stack([t[n] for t in tickets]) for n in names})
