"""How far the ETAs in a run's log are from the real times (issue 23: within 20% after the first 10%).

    python3 benchmarks/eta_accuracy.py /tmp/glta3.log --tag glta_ml100k_before
    python3 benchmarks/eta_accuracy.py run.log other.log --tag mine --out benchmarks/results/eta_accuracy_mine.json

Reads the log lines of ``recbole_llm.training.progress`` (any log the RecBole logger wrote; the
timestamps are not needed) and the stages' ``done in X s`` lines, and for every loop takes the first
line at or after 10% of it: predicted total = elapsed + ETA, error = predicted / real - 1.

* A loop inside a stage (``label: k/N unit (p%), ..., ETA t``): elapsed is printed (``T elapsed``;
  older logs: k / rate). Its real total: an epoch's loop (``... epoch e``) ends with the epoch's
  training seconds of the epoch line (its GLLM-only head passes included: the user waits for them
  too); a prefix precomputation (``... prefixes``) with the stage's ``prefix_tokens`` /
  ``prefix_tokens_per_s``; GLTA's scoring of every user (validation) with its ``scored N users in
  X s`` line; a one-shot loop named by its stage (``GLTA generate``) with the stage's ``done in``
  seconds. Where the line gives a ``stage ETA``, that one is checked too, against the
  epochs and validations from this loop's epoch to the stage's last.
* The epochs of a stage (``label epoch e/E: ..., t s, [T elapsed,] ETA [<=] t``), at the first epoch
  line with e/E >= 10%: elapsed is printed (older logs: the training and validation seconds printed so
  far). Real total: the stage's ``train_seconds + valid_seconds`` less the validation before epoch 1,
  or its ``done in``. With early stopping the ETA is a bound ("ETA <= ") on a run of all E epochs, so
  it is compared with the real time per epoch (from the last epoch line's elapsed where printed, so
  the stage's one-off setup is not multiplied) times E; whether the bound held is reported too.

The old estimator (steps left / mean rate since the loop began; epochs left * mean training seconds,
no validation) is recomputed from the same lines where they carry what it needs (k, N, elapsed; the
epochs' seconds), so one new-format log gives the before/after on the same run (``old error``).
Written: ``benchmarks/results/eta_accuracy_<tag>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from _common import REPO, write_report

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# the logger's prefix; a progress bar (tqdm, written without a newline) may stand before it
PREFIX = re.compile(r"^.*?\d\d \w{3} \d\d:\d\d(?::\d\d)?\s+(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+")
DURATION = r"[\d.]+ (?:s|min|h)"
STEP = re.compile(
    rf"^(?P<label>.+?): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\S+) \((?P<pct>\d+)%\)(?:, loss [^,]+)?, "
    rf"(?P<rate>[\d.]+) \S+/s(?:, (?P<elapsed>{DURATION}) elapsed)?, ETA (?P<eta>{DURATION})"
    rf"(?:, stage ETA (?P<stage_eta>{DURATION}))?$")
EPOCH = re.compile(r"^(?P<label>.+?) epoch (?P<e>\d+)/(?P<E>\d+): (?P<body>.*)$")
STARTS = re.compile(r"^(?P<label>.+?) starts$")
DONE = re.compile(r"^(?P<label>.+?) done in (?P<seconds>[\d.]+) s(?::(?P<stats>.*))?$")
INITIAL = re.compile(r"^(?P<label>.+?) before epoch 1: .*\((?P<seconds>[\d.]+) s\)$")
SCORED = re.compile(r"^GLTA scored \d+ users in (?P<seconds>[\d.]+) s")  # the end of a "GLTA scoring" loop
THRESHOLD = 0.10
TARGET = 0.20


def seconds_of(text: str) -> float:
    value, unit = text.split()
    return float(value) * {"s": 1.0, "min": 60.0, "h": 3600.0}[unit]


def stat(stats: str, key: str) -> float | None:
    m = re.search(rf"(?:^|, ){re.escape(key)}=([-\d.e+]+)", stats or "")
    return float(m.group(1)) if m else None


def messages(path: Path):
    for raw in path.read_text(errors="replace").splitlines():
        line = ANSI.sub("", raw)
        yield PREFIX.sub("", line).strip()


def parse(path: Path) -> list[dict]:
    """The stages of the log in order, each with its loops (step lines) and epoch lines."""
    stages, open_stage = [], {}
    for msg in messages(path):
        if m := STARTS.match(msg):
            stage = {"label": m["label"], "loops": [], "epochs": [], "initial_valid": 0.0, "log": str(path)}
            stages.append(stage)
            open_stage[m["label"]] = stage
            continue
        owner = next((s for lab, s in open_stage.items() if msg.startswith(lab + " ") or msg.startswith(lab + ":")),
                     None)
        if owner is None and open_stage and (STEP.match(msg) or SCORED.match(msg)):
            owner = list(open_stage.values())[-1]  # a loop of its own label inside the stage (GLTA scoring)
        if owner is None:
            continue
        if m := SCORED.match(msg):
            if owner["loops"] and owner["loops"][-1]["label"] == "GLTA scoring":
                owner["loops"][-1]["real"] = float(m["seconds"])
            continue
        if m := DONE.match(msg):
            if m["label"] == owner["label"]:
                owner["done_seconds"] = float(m["seconds"])
                owner["stats"] = m["stats"] or ""
                del open_stage[owner["label"]]
            continue
        if m := INITIAL.match(msg):
            owner["initial_valid"] = float(m["seconds"])
            continue
        if m := STEP.match(msg):
            done, total = int(m["done"]), int(m["total"])
            loops = owner["loops"]
            if not loops or loops[-1]["label"] != m["label"] or loops[-1]["lines"][-1]["done"] >= done:
                loops.append({"label": m["label"], "total": total, "unit": m["unit"], "lines": []})
            rate = float(m["rate"])
            loops[-1]["lines"].append({
                "done": done, "pct": int(m["pct"]), "rate": rate,
                "elapsed": seconds_of(m["elapsed"]) if m["elapsed"] else (done / rate if rate > 0 else None),
                "elapsed_printed": bool(m["elapsed"]), "eta": seconds_of(m["eta"]),
                "stage_eta": seconds_of(m["stage_eta"]) if m["stage_eta"] else None})
            continue
        if m := EPOCH.match(msg):
            parts = [p.strip() for p in m["body"].split(", ")]
            train = next((float(p[:-2]) for p in parts if re.fullmatch(r"[\d.]+ s", p)), None)
            eta = next((p for p in parts if p.startswith("ETA ")), None)
            if train is None or eta is None:
                continue
            elapsed = next((seconds_of(p[: -len(" elapsed")]) for p in parts if p.endswith(" elapsed")), None)
            valid = re.search(r"valid \S+ [-\d.]+ \(([\d.]+) s\)", m["body"])
            bound = eta.startswith("ETA <= ")
            owner["epochs"].append({"label": m["label"], "e": int(m["e"]), "E": int(m["E"]), "train": train,
                                    "valid": float(valid.group(1)) if valid else 0.0, "elapsed": elapsed,
                                    "eta": seconds_of(eta[len("ETA <= ") if bound else len("ETA "):]),
                                    "bound": bound})
    return stages


def first_at_threshold(lines, share_of):
    return next((line for line in lines if share_of(line) >= THRESHOLD - 1e-9), None)


def error(predicted, real):
    return None if not real or predicted is None else predicted / real - 1.0


def loop_rows(stage: dict) -> list[dict]:
    rows = []
    epoch_train = {(ep["label"], ep["e"]): ep for ep in stage["epochs"]}
    stats = stage.get("stats", "")
    for loop in stage["loops"]:
        line = first_at_threshold(loop["lines"], lambda x: x["pct"] / 100.0)
        if line is None or line["elapsed"] is None:
            continue
        label, real, real_what = loop["label"], None, ""
        ep = re.match(r"^(?P<stage>.+) epoch (?P<e>\d+)$", label)
        if ep:
            entry = epoch_train.get((ep["stage"], int(ep["e"])))
            real, real_what = (entry["train"], "epoch's training s") if entry else (None, "")
        elif label.endswith(" prefixes"):
            tokens, rate = stat(stats, "prefix_tokens"), stat(stats, "prefix_tokens_per_s")
            real, real_what = (tokens / rate, "prefix compute s") if tokens and rate else (None, "")
        elif "real" in loop:
            real, real_what = loop["real"], "scored ... in s"
        elif label == stage["label"]:
            real, real_what = stage.get("done_seconds"), "stage done in"
        predicted = line["elapsed"] + line["eta"]
        old = (line["elapsed"] * loop["total"] / line["done"]) if line["elapsed_printed"] and line["done"] else None
        row = {"log": stage["log"], "stage": stage["label"], "loop": label, "kind": "loop",
               "at": f"{line['done']}/{loop['total']} {loop['unit']} ({line['pct']}%)",
               "elapsed": line["elapsed"], "eta": line["eta"], "predicted": predicted, "real": real,
               "real_what": real_what, "error": error(predicted, real), "old_predicted": old, "old_error": error(old, real)}
        rows.append(row)
        if line["stage_eta"] is not None and ep:
            e = int(ep["e"])
            later = [x for x in stage["epochs"] if x["label"] == ep["stage"] and x["e"] >= e]
            if later:
                real_rest = sum(x["train"] + x["valid"] for x in later)
                rows.append({**row, "kind": "stage from this loop", "eta": line["stage_eta"],
                             "predicted": line["elapsed"] + line["stage_eta"], "real": real_rest,
                             "real_what": "epochs' training + validation s from this epoch",
                             "error": error(line["elapsed"] + line["stage_eta"], real_rest),
                             "old_predicted": None, "old_error": None})
    return rows


def epoch_rows(stage: dict) -> list[dict]:
    rows = []
    by_label: dict = {}
    for ep in stage["epochs"]:
        by_label.setdefault(ep["label"], []).append(ep)
    stats = stage.get("stats", "")
    for label, eps in by_label.items():
        line = first_at_threshold(eps, lambda x: x["e"] / x["E"])
        if line is None or line["e"] >= line["E"]:
            continue
        upto = [x for x in eps if x["e"] <= line["e"]]
        elapsed = line["elapsed"]
        if elapsed is None:  # older lines: what the log says was spent (LightGCN's validations are not in it)
            elapsed = sum(x["train"] + x["valid"] for x in upto) + stage["initial_valid"]
        train_s, valid_s = stat(stats, "train_seconds"), stat(stats, "valid_seconds")
        if train_s is not None and valid_s is not None:
            real, real_what = train_s + valid_s, "train_seconds + valid_seconds"
        else:
            real, real_what = stage.get("done_seconds"), "stage done in"
        if real is None:
            continue
        ran, planned = eps[-1]["e"], line["E"]
        full = real
        if line["bound"] and ran < planned:  # stopped early: the epochs' own pace, times all planned epochs
            last = eps[-1]["elapsed"]
            if last:  # since the loop began, to the end of the last epoch's training
                real, real_what = last + eps[-1]["valid"], "last epoch line's elapsed"
            full = real * planned / ran
        predicted = elapsed + line["eta"]
        mean_train = sum(x["train"] for x in upto) / len(upto)
        old = (sum(x["train"] for x in upto) + stage["initial_valid"] + sum(x["valid"] for x in upto)
               + (planned - line["e"]) * mean_train)
        rows.append({"log": stage["log"], "stage": stage["label"], "loop": f"{label} epochs", "kind": "epochs",
                     "at": f"epoch {line['e']}/{planned}", "elapsed": elapsed, "eta": line["eta"],
                     "predicted": predicted, "bound": line["bound"], "epochs_run": ran,
                     "real": full, "real_what": real_what + (f", x {planned}/{ran} epochs (bound)" if full != real else ""),
                     "bound_held": (predicted >= real) if line["bound"] else None,
                     "error": error(predicted, full), "old_predicted": old, "old_error": error(old, full)})
    return rows


def analyse(paths) -> dict:
    rows, stages_out = [], []
    for path in paths:
        for stage in parse(Path(path)):
            if "done_seconds" not in stage:
                continue
            loops = loop_rows(stage)
            rows += loops + epoch_rows(stage)
            covered = sum(r["real"] for r in loops if r["kind"] == "loop" and r["real"])
            if len(stage["epochs"]) >= 2:  # the epoch lines' ETA covers the epochs, validations included
                train_s, valid_s = stat(stage["stats"], "train_seconds"), stat(stage["stats"], "valid_seconds")
                epochs_s = train_s + valid_s if train_s is not None and valid_s is not None else stage["done_seconds"]
                prefix_s = sum(r["real"] for r in loops if r["loop"].endswith(" prefixes") and r["real"])
                covered = max(covered, epochs_s + prefix_s)
            covered = min(covered, stage["done_seconds"])
            stages_out.append({"log": str(path), "stage": stage["label"], "seconds": stage["done_seconds"],
                               "loops_with_eta": len(stage["loops"]), "epoch_lines": len(stage["epochs"]),
                               "in_loops_with_eta_lines": covered})
    judged = [r for r in rows if r["error"] is not None]
    return {"threshold": THRESHOLD, "target": TARGET, "rows": rows, "stages": stages_out,
            "within_target": sum(abs(r["error"]) <= TARGET for r in judged), "judged": len(judged),
            "old_within_target": sum(abs(r["old_error"]) <= TARGET for r in judged if r["old_error"] is not None),
            "old_judged": sum(r["old_error"] is not None for r in judged)}


def pct(x):
    return "" if x is None else f"{100 * x:+.0f}%"


def secs(x):
    return "" if x is None else f"{x:.0f}"


def to_markdown(report) -> str:
    out = [f"# ETA accuracy: {report['tag']}", "",
           f"Logs: {', '.join(report['logs'])}. {report.get('note', '')}".rstrip(), "",
           f"First progress line at or after {100 * report['threshold']:.0f}% of each loop: predicted total "
           f"= elapsed + ETA, error = predicted / real - 1; target |error| <= {100 * report['target']:.0f}%. "
           "`old`: the previous estimator recomputed from the same line (new-format logs only). "
           f"Within target: {report['within_target']}/{report['judged']}"
           + (f" (old estimator: {report['old_within_target']}/{report['old_judged']})" if report["old_judged"] else "")
           + ".", "",
           "| log | loop | kind | at | elapsed s | ETA s | predicted s | real s | real = | error | old error |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        bound = " (<=, held)" if r.get("bound_held") else (" (<=, broken)" if r.get("bound_held") is False else "")
        out.append(f"| {Path(r['log']).name} | {r['loop']} | {r['kind']}{bound} | {r['at']} | {secs(r['elapsed'])} | "
                   f"{secs(r['eta'])} | {secs(r['predicted'])} | {secs(r['real'])} | {r['real_what']} | "
                   f"{pct(r['error'])} | {pct(r['old_error'])} |")
    out += ["", "Stages: their time, and how much of it passed inside loops that print ETA lines, or under the "
            "ETA of epoch lines (the rest: setup, loops under 10 s, and in older logs the prefix precomputation "
            "and validation, with no line at all).",
            "", "| log | stage | done in s | loops with ETA lines | s inside them | share | epoch lines |",
            "|---|---|---|---|---|---|---|"]
    for s in report["stages"]:
        share = s["in_loops_with_eta_lines"] / s["seconds"] if s["seconds"] else 0.0
        out.append(f"| {Path(s['log']).name} | {s['stage']} | {s['seconds']:.0f} | {s['loops_with_eta']} | "
                   f"{s['in_loops_with_eta_lines']:.0f} | {100 * share:.0f}% | {s['epoch_lines']} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", help="log files")
    ap.add_argument("--tag", required=True, help="name of the report")
    ap.add_argument("--note", default="", help="a line for the report (what ran, the load)")
    ap.add_argument("--out", default=None, help="report JSON (markdown beside it)")
    args = ap.parse_args(argv)
    missing = [p for p in args.logs if not Path(p).is_file()]
    if missing:
        print(f"eta_accuracy: no such log file: {', '.join(missing)}", file=sys.stderr)
        return 2
    report = {"tag": args.tag, "logs": args.logs, "note": args.note, **analyse(args.logs)}
    if not report["rows"]:
        print(f"eta_accuracy: no progress lines with an ETA and a finished stage in {', '.join(args.logs)}",
              file=sys.stderr)
        return 2
    out = args.out or REPO / "benchmarks" / "results" / f"eta_accuracy_{args.tag}.json"
    write_report(report, out, to_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
