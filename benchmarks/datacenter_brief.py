"""Numbers for docs/datacenter.md: the 1.2 GW GB200 site, forge-n3 vs GB200 at 1 GW
(Llama-3-405B training on 15.6T tokens, Llama-3-70B serving), sensitivity and break-even.

Run: .venv/bin/python benchmarks/datacenter_brief.py   (prints Markdown)"""

from chipforge.datacenter import Assumptions, sensitivity, site_report
from chipforge.datacenter.report import compare

DAY = 86400.0


def main() -> None:
    a = Assumptions()
    s = site_report("gb200", 1.2e9, a)
    print("## 1.2 GW of GB200 NVL72 (Abilene scale)\n")
    print("| quantity | value |\n|---|---|")
    rows = {
        "racks": f"{s['racks']:,}",
        "GPUs": f"{s['chips']:,}",
        "IT power": f"{s['it_power_w'] / 1e6:,.0f} MW",
        "all-in kW per GPU (facility / GPUs)": f"{s['all_in_w_per_chip'] / 1e3:.2f}",
        "capex total": f"${s['capex_usd']['total'] / 1e9:,.1f}B",
        **{
            f"capex {k[:-4]}": f"${v / 1e9:,.1f}B"
            for k, v in s["capex_usd"].items()
            if k != "total"
        },
        "opex per year": f"${s['opex_usd_per_year']['total'] / 1e9:,.2f}B",
        "TCO per GPU-hour": f"${s['tco_usd_per_chip_hour']:.2f}",
    }
    for k, v in rows.items():
        print(f"| {k} | {v} |")
    print("\nAssumptions: " + ", ".join(f"{k}={v:g}" for k, v in a.__dict__.items()))

    c = compare(["gb200", "forge-n3"], 1e9, a, model="llama3-405b", tokens=15.6e12)["sites"]
    print("\n## forge-n3 vs GB200 at 1 GW\n")
    print("| metric | GB200 NVL72 | forge-n3 |\n|---|---|---|")
    g, h = c["gb200"], c["forge-n3"]
    lines = [
        ("chips", lambda d: f"{d['chips']:,}"),
        (
            "chip price (bought) / silicon cost (built)",
            lambda d: f"${d['chip_unit_cost_usd']:,.0f}",
        ),
        ("capex", lambda d: f"${d['capex_usd']['total'] / 1e9:,.1f}B"),
        ("TCO per year", lambda d: f"${d['tco_usd_per_year'] / 1e9:,.2f}B"),
        ("TCO per chip-hour", lambda d: f"${d['tco_usd_per_chip_hour']:.2f}"),
        ("TCO per useful PFLOP-hour (bf16)", lambda d: f"${d['usd_per_useful_pflop_hour']:.2f}"),
        (
            "Llama-3-405B, 15.6T tokens: days",
            lambda d: (
                f"{d['time_to_train_s'] / DAY:.1f} on {d['training']['training_chips']:,} chips"
            ),
        ),
        (
            "Llama-3-405B: $ per trained model",
            lambda d: f"${d['training']['usd_per_trained_model'] / 1e6:,.1f}M",
        ),
        ("Llama-3-70B serving: $ per Mtoken", lambda d: f"${d['usd_per_million_tokens']:.3f}"),
        (
            "break-even build volume (chips)",
            lambda d: f"{d['breakeven_volume']:,.0f}" if "breakeven_volume" in d else "-",
        ),
    ]
    for name, f in lines:
        print(f"| {name} | {f(g)} | {f(h)} |")
    tie = a.utilization * h["usd_per_useful_pflop_hour"] / g["usd_per_useful_pflop_hour"]
    print(
        f"\nforge-n3 ties GB200 on $/useful PFLOP-hour at an MFU of {tie:.2f}",
        f"(GB200 at {a.utilization:g})",
    )
    print(f"\nmethods: training {h['training']['method']}; serving {h['serving']['method']}")

    for chip in ("forge-n3", "gb200"):
        print(
            f"\n### Sensitivity, {chip}: TCO per useful PFLOP-hour "
            f"(base ${c[chip]['usd_per_useful_pflop_hour']:.2f})\n"
        )
        print("| knob | low -> high | at low | at high | swing |\n|---|---|---|---|---|")
        for r in sensitivity(chip, 1e9, a):
            swing = r["at_high"] - r["at_low"]
            print(
                f"| {r['knob']} | {r['low']:g} -> {r['high']:g} | ${r['at_low']:.2f} "
                f"| ${r['at_high']:.2f} | {swing:+.2f} |"
            )


if __name__ == "__main__":
    main()
