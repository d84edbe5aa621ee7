"""A design space from TOML: base chip, parameters (choices or ranges over any ChipSpec field),
weighted workloads, objectives, constraints and the sampler. Every check runs before any work.

    [base]            chip = "forge-n3"
    [params]          "matrix.rows" = [128, 256]                      # choices
                      clock = { min = "1.0 GHz", max = "2.0 GHz", steps = 3 }   # range
                      "memory.HBM3E.capacity" = ["192 GB", "288 GB"]  # levels by name
    [[workloads]]     spec = "llm:llama3-70b,phase=decode,batch=64", weight = 1
    [objectives]      tokens_per_s = "max", unit_cost_usd = "min"
    [constraints]     max_tdp_w = 1500, max_unit_cost_usd = 20000, reticle = true
    [serving]         model = "llama3-70b", chips = 8, isl = 2048, osl = 256, tpot_slo = "100 ms"
    [training]        model = "llama3-70b", chips = 1024, dp_shard = 8  # train's plan flags
    [site]            power = "1 GW", pue = 1.2             # see explore/system.py
    [sampler]         method = "grid" | "random" | "lhs" | "nsga2" | "tpe", n = 100, seed = 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from chipforge.errors import ChipforgeError, SpecError, did_you_mean
from chipforge.explore.system import (
    SERVING_OBJECTIVES,
    SITE_OBJECTIVES,
    TRAINING_OBJECTIVES,
    Serving,
    SiteCfg,
    SystemTableError,
    Training,
    parse_serving,
    parse_site,
    parse_training,
)
from chipforge.spec import ChipSpec, load_chip
from chipforge.spec.loader import validation_message
from chipforge.units import parse_quantity
from chipforge.userfile import beside, load_toml, missing

METHODS = ("grid", "random", "lhs", "nsga2", "tpe")
GRID_STEPS = 5  # grid points of a range that gives no `steps`
OBJECTIVES = {  # name -> the direction that is better
    "time_s": "min",
    "tokens_per_s": "max",
    "energy_j": "min",
    "energy_per_token_j": "min",
    "die_area_mm2": "min",
    "total_area_mm2": "min",
    "unit_cost_usd": "min",
    "tdp_w": "min",
    "tokens_per_s_per_w": "max",
    "tokens_per_s_per_usd": "max",
    **SERVING_OBJECTIVES,
    **TRAINING_OBJECTIVES,
    **SITE_OBJECTIVES,
}
NEEDS_WORKLOADS = (  # per-chip objectives from the [[workloads]]
    "time_s",
    "tokens_per_s",
    "energy_j",
    "energy_per_token_j",
    "tokens_per_s_per_w",
    "tokens_per_s_per_usd",
)
CONSTRAINTS = ("max_tdp_w", "max_unit_cost_usd", "max_die_area_mm2", "min_tokens_per_s", "reticle")


class SpaceError(ChipforgeError):
    """A malformed design space (caught before any point is evaluated)."""


@dataclass(frozen=True)
class Param:
    """One swept field: `path` is dotted (`matrix.rows`, `memory.HBM3E.capacity`)."""

    path: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    steps: int = 0  # 0: not given (a grid takes GRID_STEPS; other samplers are continuous)
    integer: bool = False

    def grid(self) -> list:
        if self.choices:
            return list(self.choices)
        steps = self.steps or GRID_STEPS
        if steps == 1:
            return [self.low]
        vals = [self.low + (self.high - self.low) * i / (steps - 1) for i in range(steps)]
        return [round(v) for v in vals] if self.integer else vals

    def at(self, u: float):
        """The value at quantile `u` in [0, 1) of this parameter (on its `steps` when given)."""
        if self.choices or self.steps:
            values = self.grid()
            return values[min(int(u * len(values)), len(values) - 1)]
        v = self.low + (self.high - self.low) * u
        return round(v) if self.integer else v


@dataclass(frozen=True)
class Space:
    base: ChipSpec
    base_name: str
    params: tuple[Param, ...]
    workloads: tuple[tuple[str, float], ...]
    objectives: dict[str, str]
    constraints: dict[str, Any] = field(default_factory=dict)
    method: str = "grid"
    n: int = 100
    seed: int = 0
    serving: Serving | None = None  # [serving]: a replica served by cluster.plan_serving
    site: SiteCfg = field(default_factory=SiteCfg)  # [site]: the datacenter the site_* fill
    training: Training | None = None  # [training]: a job planned by cluster.plan_training
    _dumps: dict = field(default_factory=dict, repr=False, compare=False)
    trust_pickle: bool = field(default=False, compare=False)  # the user's --trust-pickle

    def base_dump(self, mode: str) -> dict:
        """The base chip as a dict (`python` or `json` mode), dumped once per process;
        callers copy before changing it (apply)."""
        if mode not in self._dumps:
            self._dumps[mode] = self.base.model_dump(mode=mode)
        return self._dumps[mode]

    @property
    def site_power_w(self) -> float:
        return self.site.power_w

    def system_ident(self) -> list:
        """What a point's rows depend on beyond chip and workloads (for ids and fingerprints)."""
        site = any(k in SITE_OBJECTIVES for k in self.objectives)
        if self.serving is None and not site and self.training is None:
            return []
        out = [self.serving, self.site if site else None]
        return out if self.training is None else [*out, self.training]


def _resolve(base: dict, path: str) -> None:
    """Check that `path` names an existing field of the base chip (SpaceError if not)."""
    node: Any = base
    for part in path.split("."):
        if isinstance(node, (list, tuple)):
            names = [m.get("name") for m in node]
            if part not in names and not (part.isdigit() and int(part) < len(node)):
                raise SpaceError(
                    f"params: `{path}`: no level {part!r}; choose one of {', '.join(names)}"
                )
            node = node[names.index(part)] if part in names else node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict) and path.startswith("matrix.macs_per_cycle."):
            return  # adding a dtype is allowed
        else:
            keys = list(node) if isinstance(node, dict) else []
            raise SpaceError(
                f"params: unknown field `{path}`{did_you_mean(part, keys)}; "
                "use a dotted ChipSpec path such as matrix.rows or memory.HBM3E.capacity"
            )


def _key(node, part: str):
    """The index of `part` in a list of named levels (by name, else by position), or the key."""
    if isinstance(node, list):
        names = [m.get("name") for m in node]
        return names.index(part) if part in names else int(part)
    return part


def apply(base: dict, params: dict) -> dict:
    """`base` with the dotted-path parameters set. Only the containers on a changed path are
    copied (the rest is shared with `base`, which is never modified)."""
    d = dict(base)
    d["memory"] = list(d["memory"])
    fresh = {id(d), id(d["memory"])}
    for path, value in params.items():
        *head, last = path.split(".")
        node = d
        for part in head:
            k = _key(node, part)
            child = node[k]
            if id(child) not in fresh:
                child = list(child) if isinstance(child, (list, tuple)) else dict(child)
                node[k] = child
                fresh.add(id(child))
            node = child
        node[_key(node, last)] = value
    return d


def _check_values(path: str, values: list, base: dict) -> None:
    """Each value set alone on the base chip must be one the field accepts: a unit of the wrong
    kind (`clock = ["1 GB"]`), a string where a number goes or a value out of the field's range
    is refused here, before any point runs. Rules between fields are left to each point."""
    last = path.split(".")[-1]
    for value in values:
        try:
            ChipSpec.model_validate(apply(base, {path: value}))
        except ValidationError as err:
            first = err.errors()[0]
            if first["type"] != "field_error" and last in map(str, first["loc"]):
                why = validation_message(err, "chip")
                raise SpaceError(f"params: `{path}` = {value!r}: {why}") from None
        except (KeyError, IndexError, TypeError):
            raise SpaceError(f"params: `{path}` does not name a field of the base chip") from None


def _param(path: str, value: Any, base: dict) -> Param:
    _resolve(base, path)
    if isinstance(value, list):
        if not value:
            raise SpaceError(f"params: `{path}` is an empty list of choices; give at least one")
        if len({isinstance(v, str) for v in value}) > 1:  # the store keeps one column type
            raise SpaceError(
                f"params: `{path}` mixes strings and numbers ({value!r}); write every choice the "
                'same way, e.g. all as quantity strings ("1.4 GHz")'
            )
        _check_values(path, value, base)
        return Param(path, choices=tuple(value))
    if not isinstance(value, dict) or not {"min", "max"} <= set(value):
        raise SpaceError(
            f"params: `{path}` must be a list of choices or {{min, max[, steps]}}, not {value!r}"
        )
    _check_values(path, [value["min"], value["max"]], base)
    low = parse_quantity(value["min"], field=f"params.{path}.min")
    high = parse_quantity(value["max"], field=f"params.{path}.max")
    steps = value.get("steps", 0)
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise SpaceError(f"params: `{path}.steps` must be an integer, not {steps!r}")
    if high < low or (steps < 1 and "steps" in value) or (steps != 1 and high == low):
        given = f", steps {steps}" if "steps" in value else ""  # not "steps 0" when left out
        raise SpaceError(
            f"params: `{path}` is an empty range (min {value['min']}, max {value['max']}{given}); "
            "give min < max and steps >= 1"
        )
    integer = all(isinstance(value[k], int) for k in ("min", "max"))
    return Param(path, low=low, high=high, steps=steps, integer=integer)


def _table(data: Any, key: str, default: Any, kind: type = dict) -> Any:
    """Section `key` of the space, which must be a TOML table (or array of tables)."""
    value = data.get(key, default)
    if not isinstance(value, kind):
        shape = "a table [" + key + "]" if kind is dict else "an array of tables [[" + key + "]]"
        raise SpaceError(f"`{key}` must be {shape}, not {value!r}"[:200])
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpaceError(f"{where} must be a finite number, not {value!r}")
    return float(value)


def _objectives(raw: Any) -> dict[str, str]:
    if not raw:
        raise SpaceError('objectives: give at least one, e.g. tokens_per_s = "max"')
    out = {}
    for name, sense in raw.items():
        if name not in OBJECTIVES:
            raise SpaceError(f"objectives: unknown `{name}`{did_you_mean(name, OBJECTIVES)}")
        if sense not in ("min", "max"):
            raise SpaceError(f'objectives: `{name}` must be "min" or "max", not {sense!r}')
        out[name] = sense
    return out


def _constraints(raw: dict) -> dict:
    for name in raw:
        if name not in CONSTRAINTS:
            raise SpaceError(f"constraints: unknown `{name}`{did_you_mean(name, CONSTRAINTS)}")
    out = {
        k: (bool(v) if k == "reticle" else _number(v, f"constraints: `{k}`"))
        for k, v in raw.items()
    }
    for k, v in out.items():
        if k != "reticle" and v <= 0:
            raise SpaceError(f"constraints: `{k}` must be > 0, not {v}; no design can meet it")
    return out


# [[workloads]] of one space: each is parsed (a model file or traced config: seconds) before the
# sweep and costed on every point
MAX_WORKLOADS = 100


def _workloads(raw: Any, system: bool, trust: bool) -> tuple[tuple[str, float], ...]:
    from chipforge.workload import parse_workload

    if not raw and system:  # a [serving] or [training] table
        return ()
    if not raw:
        raise SpaceError('workloads: give at least one [[workloads]] with spec = "...", or a '
                         "[serving] or [training] table")  # fmt: skip
    if len(raw) > MAX_WORKLOADS:
        raise SpaceError(f"workloads: {len(raw):,} [[workloads]]; at most {MAX_WORKLOADS}")
    out = []
    for i, w in enumerate(raw):
        if not isinstance(w, dict) or not isinstance(w.get("spec"), str):
            raise SpaceError(f'workloads[{i}]: `spec` is missing, e.g. spec = "llama3-70b"')
        extra = sorted(set(w) - {"spec", "weight"})
        if extra:
            raise SpaceError(f"workloads[{i}]: unknown key `{extra[0]}`; use spec, weight")
        weight = _number(w.get("weight", 1.0), f"workloads[{i}]: `weight`")
        if weight <= 0:
            raise SpaceError(f"workloads[{i}]: `weight` must be > 0, not {weight}")
        parse_workload(w["spec"], trust_pickle=trust)  # bad strings fail here, before any work
        out.append((w["spec"], weight))
    return tuple(out)


def space_from_dict(data: dict, where: str = "space", *, trust_pickle: bool = False) -> Space:
    """Validate a parsed space; every error is one line naming the key and the fix.
    `trust_pickle` (the user's, never the file's) lets torch unpickle its .pt2 workloads."""
    unknown = set(data) - {
        "base",
        "params",
        "workloads",
        "objectives",
        "constraints",
        "sampler",
        "site",
        "serving",
        "training",
    }
    if unknown:
        raise SpaceError(f"{where}: unknown section `{sorted(unknown)[0]}`")
    base_name = str(_table(data, "base", {}).get("chip", ""))
    if not base_name:
        raise SpaceError(f'{where}: [base] chip is missing, e.g. chip = "forge-n3"')
    try:
        base = load_chip(base_name)
    except SpecError as e:
        raise SpaceError(f"{where}: [base] {e}") from None
    base_dict = base.model_dump()
    params = tuple(_param(p, v, base_dict) for p, v in _table(data, "params", {}).items())
    if not params:
        raise SpaceError(f"{where}: [params] is empty; sweep at least one field")
    sampler = _table(data, "sampler", {})
    extra = sorted(set(sampler) - {"method", "n", "seed"})
    if extra:  # e.g. trust_pickle: a space file cannot turn it on, and says so
        raise SpaceError(f"sampler: unknown key `{extra[0]}`; use method, n, seed")
    method = sampler.get("method", "grid")
    if not isinstance(method, str) or method not in METHODS:
        raise SpaceError(f"sampler: `method` must be one of {', '.join(METHODS)}, not {method!r}")
    n, seed = sampler.get("n", 100), sampler.get("seed", 0)
    for key, value in (("n", n), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpaceError(f"sampler: `{key}` must be an integer, not {value!r}")
    if n < 1:
        raise SpaceError(f"sampler: `n` must be >= 1, not {n}")
    if not 0 <= seed < 2**32:  # numpy's and Optuna's seeds
        raise SpaceError(f"sampler: `seed` must be 0 to 2**32 - 1, not {seed}")
    try:
        serving = parse_serving(_table(data, "serving", None, (dict, type(None))))
        site = parse_site(_table(data, "site", {}), base_name)
        training = parse_training(_table(data, "training", None, (dict, type(None))))
    except SystemTableError as e:
        raise SpaceError(f"{where}: {e}") from None
    space = Space(
        base=base,
        base_name=base_name,
        params=params,
        workloads=_workloads(
            _table(data, "workloads", [], list),
            serving is not None or training is not None,
            trust_pickle,
        ),
        objectives=_objectives(_table(data, "objectives", {})),
        constraints=_constraints(_table(data, "constraints", {})),
        method=method,
        n=n,
        seed=seed,
        serving=serving,
        site=site,
        training=training,
        trust_pickle=trust_pickle,
    )
    _check_needs(space, where)
    return space


def _check_needs(space: Space, where: str) -> None:
    """Each objective and constraint has the inputs it is computed from."""
    wanted = list(space.objectives)
    if "min_tokens_per_s" in space.constraints:
        wanted.append("tokens_per_s")
    for name in wanted:
        if name in NEEDS_WORKLOADS and not space.workloads:
            raise SpaceError(f"{where}: `{name}` needs [[workloads]]; add one or drop it")
        if name in SERVING_OBJECTIVES and space.serving is None:
            raise SpaceError(
                f'{where}: `{name}` needs a [serving] table, e.g. model = "llama3-70b", chips = 8'
            )
        if name in TRAINING_OBJECTIVES and space.training is None:
            raise SpaceError(f'{where}: `{name}` needs a [training] table, e.g. model = '
                             '"llama3-70b", chips = 1024')  # fmt: skip
        if name == "tpot_s" and space.serving is not None and space.serving.osl == 1:
            raise SpaceError(  # TPOT = (e2e - TTFT) / (osl - 1): no point would have one
                f"{where}: `tpot_s` is undefined with [serving] osl = 1 (no time between "
                "tokens); raise osl or drop the objective"
            )


def load_space(path: str | Path, *, trust_pickle: bool = False) -> Space:
    p = Path(path)
    try:
        absent = not p.is_file()
    except OSError:  # a name too long, ...: load_toml says why it cannot be read
        absent = False
    if absent:
        raise SpaceError(f"space file {str(path)[:80]!r} {missing(p)}")
    data = load_toml(p, what="space file", error=SpaceError)
    _beside(data, p.parent)
    return space_from_dict(data, str(path), trust_pickle=trust_pickle)


def _beside(data: dict, folder: Path) -> None:
    """A relative file path in a space file (chip or rack TOML, a workload's or the serving
    model's config.json, model folder, .onnx or .pt2) is relative to the space file
    (`userfile.beside`)."""
    for table, key in (("base", "chip"), ("site", "rack"), ("serving", "model"),
                       ("training", "model")):  # fmt: skip
        value = data.get(table, {}).get(key) if isinstance(data.get(table), dict) else None
        if isinstance(value, str):
            head, sep, rest = value.partition(",")
            data[table][key] = beside(head, folder) + sep + rest
    for w in data.get("workloads", []) if isinstance(data.get("workloads"), list) else []:
        if isinstance(w, dict) and isinstance(w.get("spec"), str):
            head, sep, rest = w["spec"].partition(",")
            w["spec"] = beside(head, folder) + sep + rest
