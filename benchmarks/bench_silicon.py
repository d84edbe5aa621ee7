"""Cost and power breakdown of forge-n3 and the sensitivity of its unit cost to wafer price,
defect density and HBM price (+-30%). Prints the Markdown pasted into docs/silicon.md.

    .venv/bin/python benchmarks/bench_silicon.py
"""

from __future__ import annotations

from chipforge.data import figure
from chipforge.silicon import evaluate, unit_cost
from chipforge.silicon.interfaces import hbm_generation
from chipforge.spec import load_chip

CHIPS = ("forge-n3", "h100", "b200", "a100", "tpu-v4", "tpu-v1")
SWING = 0.30


def table(rows: dict[str, float], unit: str, fmt: str) -> str:
    lines = [f"| item | {unit} |", "|---|---:|"]
    lines += [f"| {k} | {format(v, fmt)} |" for k, v in rows.items()]
    return "\n".join(lines)


def sensitivity(name: str) -> str:
    chip = load_chip(name)
    node = chip.process
    base = unit_cost(chip).unit_cost
    knobs = {
        "wafer price": ("wafer_price_usd", node.wafer_price_usd),
        "defect density": ("defect_density_per_cm2", node.defect_density_per_cm2),
        "HBM price per GB": ("hbm_price_per_gb_usd", hbm_generation(chip.hbm).price_per_gb_usd),
    }
    lines = ["| input (base) | -30% | +30% |", "|---|---:|---:|"]
    for label, (arg, value) in knobs.items():
        low = unit_cost(chip, **{arg: value * (1 - SWING)}).unit_cost
        high = unit_cost(chip, **{arg: value * (1 + SWING)}).unit_cost
        lines.append(
            f"| {label} ({value:g}) | ${low:,.0f} ({low / base - 1:+.1%}) "
            f"| ${high:,.0f} ({high / base - 1:+.1%}) |"
        )
    return f"Base unit cost: ${base:,.0f}\n\n" + "\n".join(lines)


def checks() -> str:
    """Acceptance targets and held-out figures against the model, one row each."""

    def die(name: str) -> float:
        return evaluate(load_chip(name)).to_dict()["die_area_mm2"]

    def cost(name: str) -> float:
        return evaluate(load_chip(name)).unit_cost_usd

    def pj(name: str) -> float:
        d = evaluate(load_chip(name)).to_dict()
        dtype = "bf16" if "bf16" in d["peak_flops_per_s"] else "int8"
        return d["energy_per_flop_at_tdp_j"][dtype] * 1e12

    def b200_total() -> float:
        return evaluate(load_chip("b200")).to_dict()["total_area_mm2"]

    rows = [  # (kind, label, model, target, band); a (low, high) target is a range
        ("target", "A100 die mm2", die("a100"), figure("hw-a100-die"), 0.15),
        ("target", "H100 die mm2", die("h100"), figure("hw-h100-die"), 0.15),
        ("target", "TPU v1 die mm2 (<= 331)", die("tpu-v1"), figure("hw-tpuv1-process"), 0.20),
        ("target", "H100 unit cost $", cost("h100"), (2500, 4500), 0),
        ("target", "B200 unit cost $", cost("b200"), (5000, 8000), 0),
        ("target", "H100 pJ/FLOP at TDP", pj("h100"), figure("semi-e-h100-chip"), 0.30),
        ("target", "B200 pJ/FLOP at TDP", pj("b200"), figure("semi-e-b200-chip"), 0.30),
        ("target", "TPU v4 pJ/FLOP (170 W)", pj("tpu-v4"), figure("semi-e-tpuv4-chip"), 0.30),
        ("held out", "B200 total die mm2 (analyst)", b200_total(), figure("hw-b200-die"), 0.15),
        ("held out", "H200 unit cost $ (Silicon Analysts)", cost("h200"), 4800.0, 0.30),
        ("held out", "MI300X unit cost $ (Silicon Analysts)", cost("mi300x"), 5300.0, 0.30),
        (
            "held out",
            "MI300X pJ/FLOP (750 W)",
            pj("mi300x"),
            figure("hw-mi300x-tbp") / figure("hw-mi300x-bf16-dense"),
            0.30,
        ),
        (
            "held out",
            "A100 pJ/FLOP (400 W)",
            pj("a100"),
            figure("hw-a100-tdp") / figure("hw-a100-bf16-dense"),
            0.30,
        ),
        ("held out", "TPU v1 pJ/op (40 W busy)", pj("tpu-v1"), figure("semi-e-tpuv1-chip"), 0.30),
    ]
    lines = ["| kind | figure | target | model | off | verdict |", "|---|---|---:|---:|---:|---|"]
    for kind, label, model, target, band in rows:
        if isinstance(target, tuple):
            low, high = target
            ok, shown = low <= model <= high, f"{low:,.0f}-{high:,.0f}"
            off = model / low - 1 if model < low else (model / high - 1 if model > high else 0.0)
        else:
            ok, shown, off = (
                abs(model / target - 1) <= band,
                f"{target:,.4g} +-{band:.0%}",
                model / target - 1,
            )
        verdict = "met" if ok else "missed"
        off_s = "in range" if isinstance(target, tuple) and ok else f"{off:+.1%}"
        lines.append(f"| {kind} | {label} | {shown} | {model:,.4g} | {off_s} | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    house = evaluate(load_chip("forge-n3")).to_dict()
    b = house["breakdown"]
    print("### forge-n3 on n3p\n")
    print(f"die {house['die_area_mm2']:.0f} mm2 x {house['dies']} dies, ")
    print(f"{house['dies_per_wafer']:.0f} dies per wafer, yield {house['yield']:.3f}, ")
    print(f"unit cost ${house['unit_cost_usd']:,.0f}, model TDP {house['tdp_w']:.0f} W\n")
    print(table(b["area_mm2"], "mm2", ",.1f") + "\n")
    print(table(b["cost_usd"], "USD", ",.0f") + "\n")
    print(table(b["power_w"], "W", ",.1f") + "\n")
    print("### Sensitivity of forge-n3's unit cost (+-30%)\n")
    print(sensitivity("forge-n3") + "\n")
    print("### Acceptance targets and held-out figures\n")
    print(checks() + "\n")
    print("### All chips (model)\n")
    print("| chip | node | die mm2 | dies | yield | unit cost | model TDP W | pJ/FLOP |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in CHIPS:
        d = evaluate(load_chip(name)).to_dict()
        main_dtype = "bf16" if "bf16" in d["peak_flops_per_s"] else "int8"
        pj = d["energy_per_flop_at_tdp_j"][main_dtype] * 1e12
        print(
            f"| {name} | {d['node']} | {d['die_area_mm2']:.0f} | {d['dies']} | {d['yield']:.3f} "
            f"| ${d['unit_cost_usd']:,.0f} | {d['tdp_w']:.0f} | {pj:.2f} ({main_dtype}) |"
        )


if __name__ == "__main__":
    main()
