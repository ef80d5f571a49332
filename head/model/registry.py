"""`METHODS`: the one table of heads (`--method` name -> builder, help, the options it reads).

Everything else is derived from it: `HeadConfig.method`'s help and allowed values (`CHOICES["method"]`),
`build_model` (head/model/factory.py), the error for an unknown method, and the contract tests
(tests/test_head_contract.py), which build, train, save, load and evaluate every entry. Adding a head:
docs/TRAINING.md, "Adding a head".

Light on purpose (standard library only): `cmdcl --help` reads it through head/model/config.py, so builders are
named by module path and imported only when a head is built.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable, Iterator, Mapping, Sequence

from cmdcl.core.errors import CmdclError


@dataclass(frozen=True)
class MethodEntry:
    """One `--method`: how to build it and what it reads."""
    builder: str  # "module:callable", called as builder(cfg: HeadConfig, inputs: HeadInputs) -> nn.Module
    help: str  # what it is, one phrase, for `--method`'s help
    # HeadConfig fields it reads besides the training recipe every method shares (config.RECIPE); the option
    # checks of HeadConfig.check() apply to a method only for the fields it reads
    options: tuple[str, ...] = ()
    # Relative training cost of one run (0 = nothing to train): `cmdcl demo` starts the costliest runs first, so
    # no worker is left with a long run at the end. A guess is enough; only the order counts.
    cost: int = 1

    def build_function(self) -> Callable[..., Any]:
        module, _, name = self.builder.partition(":")
        return getattr(import_module(module), name)


_SIZES = ("width", "heads", "dropout", "init_temperature")
METHODS: dict[str, MethodEntry] = {
    "cmdcl": MethodEntry(
        "cmdcl.head.model.factory:build_cmdcl", "the CMDCL head (docs/METHOD.md)",
        ("use_tci", "use_vci", "sta_layers", "bias_estimator", "sinkhorn_iters", "sinkhorn_eps", "bias_source",
         "frontdoor_cross", "dictionary_size", "use_patches", "mediator", "patch_frame_context", "static_split",
         "grounding_loss", "patch_grounding", "patch_contrast", "mediator_frames", "tci_debias", "step_readout", "step_loss",
         "step_contrast", "step_all_loss", "step_centre", "readout_detach", "readout_input", "readout_hidden", "tci_residual",
         "classifier", "refresh_memory", *_SIZES), cost=3),
    "linear": MethodEntry(
        "cmdcl.head.model.factory:build_linear", "linear probe on the mean of the valid frames (order-blind)",
        ("dropout",)),
    "transformer": MethodEntry(
        "cmdcl.head.model.factory:build_transformer",
        "Text4Vis-style temporal transformer scored against the frozen class texts", ("sta_layers", *_SIZES), cost=2),
    "zeroshot": MethodEntry(
        "cmdcl.head.model.factory:build_zeroshot", "CLIP class texts vs the mean frame; no parameters: scored, not "
        "trained", cost=0),
}


def method_entry(name: str) -> MethodEntry:
    """The table entry of `--method name`; an unknown name is a one-line error listing the known ones."""
    if name not in METHODS:
        raise CmdclError(f"--method {name!r} is not one of {', '.join(METHODS)}.",
                         fix="docs/TRAINING.md, \"Adding a head\", adds one")
    return METHODS[name]


def reads(method: str, option: str) -> bool:
    """Whether head `method` reads HeadConfig field `option` (its entry's `options`)."""
    return option in method_entry(method).options


def methods_help() -> str:
    """`--method`'s help: every entry with its phrase."""
    return "; ".join(f"{name}: {entry.help}" for name, entry in METHODS.items()) + "."


class TableNames(Sequence[str]):
    """The keys of a table, read when used: an entry added later (a plugin, a test) is a valid choice too."""

    def __init__(self, table: Mapping[str, Any]):
        self._table = table

    def __getitem__(self, index):  # type: ignore[override]
        return tuple(self._table)[index]

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._table))

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __repr__(self) -> str:
        return repr(tuple(self._table))
