#!/usr/bin/env python3
"""Compare fraudstream with River on the same stream, features and label delay.

Usage (from anywhere; paths are relative to the repository root):

    python3 benches/river_compare.py                      # run the engine, then River (lr, arf)
    python3 benches/river_compare.py --days 60            # passes --set source.days=60 to the engine
    python3 benches/river_compare.py -- --set model.l2=2  # everything after `--` goes to `bench`
    python3 benches/river_compare.py --export target/river-export.csv   # reuse an export
    python3 benches/river_compare.py --models lr --limit 50000           # quick run
    python3 benches/river_compare.py --synthetic 20000    # synthetic stream, River only (testing)

What it does:

1. Creates a virtualenv in target/river-venv, installs benches/requirements-river.txt
   (river==0.26.1) unless river is already there, and re-executes itself inside it.
2. Unless --export is given, runs
       cargo run --release -q -- bench --export-stream PATH [--set source.days=N] [extra args]
   from the repository root. The engine writes the stream it processed to PATH and prints
   one JSON line with its own figures, which is kept next to the export as PATH.engine.json
   (so a later --export PATH run shows the engine row too).
3. Replays the export through each River model, test-then-train: a `T` row is scored with
   predict_proba_one and its features are kept; an `L` row looks the transaction up and calls
   learn_one with the features the transaction was scored with (first label wins; labels of
   unknown transactions are skipped). No model ever sees a label before the engine did.
4. Prints one table row per engine/model and writes the same to target/river-compare.json.

Export format (CSV with header, rows in the order the engine processed them):
    kind,tx_id,ts,is_fraud,<numeric features...>,cat_mcc,cat_country,cat_channel
kind is T (features filled, is_fraud empty) or L (features empty, is_fraud 0/1); ts is epoch
milliseconds (for L: arrival time of the label). Every feature column whose name starts with
`cat_` is categorical (a raw string, empty = missing); all others are raw floats.

Features given to River:
  lr   numeric features -> preprocessing.StandardScaler, categorical features ->
       preprocessing.OneHotEncoder (an empty categorical is left out of the dict, i.e. no
       one-hot bit), both feeding linear_model.LogisticRegression (River defaults: SGD 0.01).
       Frauds are learnt with sample weight w=5.0, like the engine's default imbalance policy.
  arf  forest.ARFClassifier(seed=42) gets the raw numbers and the categorical strings
       (Hoeffding trees split on nominal features natively); no scaling, no sample weight.
       By default only the first 100,000 transactions (--arf-limit) because ARF is slow.

Metrics use fraudstream's definitions (src/eval.rs): tie-aware ROC AUC (Mann-Whitney, ties
count 1/2), average precision as scikit-learn defines it (one threshold per distinct score),
scores rounded to f32 like the engine stores them, NaN scored as 0. Day of a transaction =
ts // 86_400_000; "last N days" = transactions whose day is >= last_day - N + 1, last_day being
the last day with a scored transaction. A transaction whose label never arrived counts as
genuine (engine default `unlabeled = genuine`); --unlabeled ignore leaves it out instead.

Speed: River's samples/s = transactions / seconds spent in predict_proba_one + learn_one +
building their feature dicts (CSV parsing and bookkeeping are not timed). The engine's figure
is its own transactions_per_sec, which includes parsing and feature computation, so the
ratio fraudstream/River understates the engine's advantage on the model part.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import subprocess
import sys
import time
from array import array
from pathlib import Path

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
VENV = ROOT / "target" / "river-venv"
REQUIREMENTS = SCRIPT.parent / "requirements-river.txt"
RIVER_VERSION = "0.26.1"
DEFAULT_EXPORT = ROOT / "target" / "river-export.csv"
SYNTHETIC_EXPORT = ROOT / "target" / "river-synthetic.csv"
RESULT_JSON = ROOT / "target" / "river-compare.json"
DAY_MS = 86_400_000
FRAUD_WEIGHT = 5.0
MODELS = ("lr", "arf")
IN_VENV_FLAG = "RIVER_COMPARE_IN_VENV"


class Fail(Exception):
    """A fatal, user-facing error (printed without a traceback, exit code 1)."""


# --------------------------------------------------------------------------- venv


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def ensure_venv_and_reexec(argv: list[str]) -> None:
    """Create target/river-venv with river if needed, then exec this script inside it."""
    if in_venv():
        return
    if os.environ.get(IN_VENV_FLAG):
        raise Fail(f"re-executed in {VENV} but sys.prefix is {sys.prefix}; delete {VENV} and retry")
    py = venv_python()
    if not py.exists():
        print(f"[river-compare] creating virtualenv {VENV}", file=sys.stderr)
        r = subprocess.run([sys.executable, "-m", "venv", str(VENV)])
        if r.returncode != 0 or not py.exists():
            raise Fail(f"`{sys.executable} -m venv {VENV}` failed")
    check = f"import importlib.metadata as m, sys; sys.exit(m.version('river') != '{RIVER_VERSION}')"
    if subprocess.run([str(py), "-c", check], stderr=subprocess.DEVNULL).returncode != 0:
        print(f"[river-compare] installing river=={RIVER_VERSION} into {VENV}", file=sys.stderr)
        spec = ["-r", str(REQUIREMENTS)] if REQUIREMENTS.exists() else [f"river=={RIVER_VERSION}"]
        env = dict(os.environ, MAKEFLAGS="-j1", CARGO_BUILD_JOBS="1")
        cmd = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
               "--prefer-binary", *spec]
        if subprocess.run(cmd, env=env).returncode != 0:
            raise Fail(f"pip install into {VENV} failed: {' '.join(cmd)}")
    env = dict(os.environ, **{IN_VENV_FLAG: "1"})
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(str(py), [str(py), str(SCRIPT), *argv], env)


# --------------------------------------------------------------------------- engine


def run_engine(export: Path, days: int | None, extra: list[str]) -> dict:
    """Run `fraudstream bench --export-stream`, return its JSON line (also saved as sidecar)."""
    export.parent.mkdir(parents=True, exist_ok=True)
    for stale in (export, sidecar(export)):
        if stale.exists():
            stale.unlink()
    cmd = ["cargo", "run", "--release", "-q", "--", "bench", "--export-stream", str(export)]
    if days is not None:
        cmd += ["--set", f"source.days={days}"]
    cmd += extra
    print(f"[river-compare] running: {' '.join(cmd)}", file=sys.stderr)
    try:
        r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise Fail("cargo not found on PATH")
    if r.returncode != 0:
        tail = f"\nstdout tail:\n{r.stdout[-2000:]}" if r.stdout.strip() else ""
        raise Fail(f"engine run failed (exit {r.returncode}, its stderr is above): {' '.join(cmd)}{tail}")
    engine = None
    for line in reversed(r.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                engine = json.loads(line)
                break
            except json.JSONDecodeError:
                pass
    if not isinstance(engine, dict):
        raise Fail("engine run printed no JSON line on stdout; got:\n" + r.stdout[-2000:])
    if not export.exists() or export.stat().st_size == 0:
        raise Fail(f"engine run succeeded but wrote no export at {export}")
    sidecar(export).write_text(json.dumps(engine) + "\n")
    return engine


def sidecar(export: Path) -> Path:
    return export.with_name(export.name + ".engine.json")


def load_sidecar(export: Path) -> dict | None:
    p = sidecar(export)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"[river-compare] ignoring unreadable {p}: {e}", file=sys.stderr)
        return None


# --------------------------------------------------------------------------- synthetic stream


def write_synthetic(path: Path, n: int, days: int = 60, seed: int = 7) -> None:
    """Write an export-format file with `n` transactions over `days` days (~1% fraud).

    Fraud depends mostly on `amount_ratio` (and a bit on country/channel); every
    transaction gets a label 0.5-7 days after it (frauds tend to arrive later),
    rows are in time order like the engine's stream.
    """
    rng = random.Random(seed)
    start = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS
    span = days * DAY_MS
    mccs = ["5411", "5812", "5999", "4111", "7995", ""]
    countries = ["FR", "DE", "US", "GB", "NG", ""]
    channels = ["pos", "ecom", "atm"]
    rows: list[tuple] = []
    for i in range(n):
        ts = start + int(span * i / n) + rng.randrange(max(1, span // n))
        amount = math.exp(rng.gauss(3.5, 1.0))
        ratio = rng.gauss(0.0, 1.0)
        count = rng.randrange(0, 20)
        hour = (ts // 3_600_000) % 24
        mcc, country, channel = rng.choice(mccs), rng.choice(countries), rng.choice(channels)
        logit = -5.6 + 1.6 * ratio + 0.8 * (country == "NG") + 0.4 * (channel == "ecom")
        fraud = rng.random() < 1.0 / (1.0 + math.exp(-logit))
        feats = [f"{amount:.2f}", f"{ratio:.6f}", str(count), str(hour), f"{rng.random():.6f}",
                 mcc, country, channel]
        tx = f"tx{i}"
        rows.append((ts, 0, ["T", tx, str(ts), "", *feats]))
        delay = rng.uniform(0.5, 7.0 if fraud else 3.0) * DAY_MS
        rows.append((ts + int(delay), 1, ["L", tx, str(ts + int(delay)), str(int(fraud))] + [""] * len(feats)))
    rows.sort(key=lambda r: (r[0], r[1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "tx_id", "ts", "is_fraud", "amount", "amount_ratio", "card_count_1d",
                    "hour", "noise", "cat_mcc", "cat_country", "cat_channel"])
        for _, _, r in rows:
            w.writerow(r)
    frauds = sum(1 for _, k, r in rows if k == 1 and r[3] == "1")
    print(f"[river-compare] wrote synthetic stream {path}: {n} transactions, {frauds} frauds, "
          f"{days} days", file=sys.stderr)


# --------------------------------------------------------------------------- metrics


def _groups(scores, labels, descending: bool):
    """Per distinct score (ascending or descending): (positives, negatives) as int64 arrays."""
    import numpy as np

    s = np.nan_to_num(np.asarray(scores, dtype=np.float32), nan=0.0) + np.float32(0.0)  # -0 -> 0
    y = np.asarray(labels, dtype=bool)
    uniq, inv = np.unique(s, return_inverse=True)  # ascending, -0.0 == 0.0
    pos = np.bincount(inv, weights=y, minlength=len(uniq)).astype(np.int64)
    tot = np.bincount(inv, minlength=len(uniq)).astype(np.int64)
    neg = tot - pos
    if descending:
        pos, neg = pos[::-1], neg[::-1]
    return pos, neg


def roc_auc(scores, labels) -> float | None:
    """Tie-aware ROC AUC (Mann-Whitney, ties count 1/2); None if a class is absent."""
    import numpy as np

    pos, neg = _groups(scores, labels, descending=False)
    p_tot, n_tot = int(pos.sum()), int(neg.sum())
    if p_tot == 0 or n_tot == 0:
        return None
    neg_below = np.concatenate(([0], np.cumsum(neg)[:-1]))
    u2 = int((2 * pos * neg_below + pos * neg).sum())
    return u2 / (2.0 * p_tot * n_tot)


def average_precision(scores, labels) -> float | None:
    """Average precision as scikit-learn: sum over thresholds of (R_n - R_{n-1}) P_n."""
    import numpy as np

    pos, neg = _groups(scores, labels, descending=True)
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    if len(tp) == 0 or tp[-1] == 0:
        return None
    m = pos > 0
    return float((pos[m] * (tp[m] / (tp[m] + fp[m]))).sum() / tp[-1])


# --------------------------------------------------------------------------- River replay


def build_model(name: str, numeric: list[str], categorical: list[str]):
    """Return (model, learn kwargs for a fraud, keep empty categoricals?, description).

    lr: numeric keys -> StandardScaler, string values -> OneHotEncoder(drop_zeros=True)
    (the zeros of absent categories change neither the prediction nor the gradient of an
    unregularised LR, dropping them only saves River time); an empty categorical is left out
    of the dict. arf: raw dict, every categorical key always present ("" when empty),
    because ARF fixes its feature-subspace size from the first example's keys.
    """
    import inspect

    from river import compose, forest, linear_model, preprocessing

    if name == "lr":
        prep = compose.Select(*numeric) | preprocessing.StandardScaler()
        if categorical:
            prep = prep + (compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True))
        model = prep | linear_model.LogisticRegression()
        if "w" in inspect.signature(linear_model.LogisticRegression.learn_one).parameters:
            return (model, {"w": FRAUD_WEIGHT}, False,
                    f"StandardScaler + OneHotEncoder | LogisticRegression, frauds w={FRAUD_WEIGHT}")
        return (model, {}, False,
                "StandardScaler + OneHotEncoder | LogisticRegression (no sample weight: unsupported)")
    if name == "arf":
        return (forest.ARFClassifier(seed=42), {}, True,
                "ARFClassifier(seed=42), raw numbers + nominal strings, no sample weight")
    raise Fail(f"unknown model {name!r} (choose from {', '.join(MODELS)})")


def read_header(path: Path) -> tuple[list[str], list[int], list[str], list[int]]:
    with path.open(newline="") as f:
        header = next(csv.reader(f), None)
    if not header or [h.strip() for h in header[:4]] != ["kind", "tx_id", "ts", "is_fraud"]:
        raise Fail(f"{path}: header must start with kind,tx_id,ts,is_fraud; got {header[:4] if header else None}")
    feats = [(i, h.strip()) for i, h in enumerate(header) if i >= 4]
    num = [(i, h) for i, h in feats if not h.startswith("cat_")]
    cat = [(i, h) for i, h in feats if h.startswith("cat_")]
    if not feats:
        raise Fail(f"{path}: no feature columns")
    return [h for _, h in num], [i for i, _ in num], [h for _, h in cat], [i for i, _ in cat]


def replay(path: Path, name: str, limit: int | None, unlabeled: str, last_days: int) -> dict:
    """Test-then-train one River model over the export; return its result row."""
    num_names, num_idx, cat_names, cat_idx = read_header(path)
    model, fraud_kw, keep_empty, desc = build_model(name, num_names, cat_names)
    predict, learn = model.predict_proba_one, model.learn_one
    ncols = 4 + len(num_names) + len(cat_names)

    index: dict[str, int] = {}          # tx_id -> position (kept: recognises duplicate labels)
    pending: dict[int, tuple] = {}      # position -> (numeric array, categorical tuple)
    scores, days = array("f"), array("q")
    labels = array("b")                 # -1 unlabelled, 0/1
    counts = dict(labels=0, learnt=0, unknown=0, duplicate=0, bad_values=0, replaced_tx=0)
    timed = 0.0
    perf = time.perf_counter
    wall0 = perf()
    n = 0
    stopped = False
    next_progress = 50_000

    if keep_empty:
        def features(vals, cats):
            x = dict(zip(num_names, vals))
            x.update(zip(cat_names, cats))
            return x
    else:
        def features(vals, cats):
            x = dict(zip(num_names, vals))
            for k, v in zip(cat_names, cats):
                if v:
                    x[k] = v
            return x

    with path.open(newline="") as f:
        rd = csv.reader(f)
        next(rd)
        for lineno, row in enumerate(rd, start=2):
            if not row:
                continue
            kind = row[0]
            if kind == "T":
                if stopped:
                    continue
                if len(row) < ncols:
                    raise Fail(f"{path}:{lineno}: {len(row)} columns, header has {ncols}")
                vals = array("d")
                for i in num_idx:
                    try:
                        v = float(row[i])
                    except ValueError:
                        v = math.nan
                    if not math.isfinite(v):
                        counts["bad_values"] += 1
                        v = 0.0
                    vals.append(v)
                cats = tuple(sys.intern(row[i]) for i in cat_idx)
                t0 = perf()
                s = predict(features(vals, cats)).get(True, 0.0)
                timed += perf() - t0
                pos = len(scores)
                if row[1] in index:
                    counts["replaced_tx"] += 1
                    pending.pop(index[row[1]], None)
                index[row[1]] = pos
                pending[pos] = (vals, cats)
                scores.append(s)
                days.append(int(row[2]) // DAY_MS)
                labels.append(-1)
                n += 1
                if n >= next_progress:
                    print(f"[river-compare] {name}: {n} transactions, {perf() - wall0:.0f}s",
                          file=sys.stderr)
                    next_progress += 50_000
                if limit is not None and n >= limit:
                    stopped = True
            elif kind == "L":
                pos = index.get(row[1])
                if pos is None:
                    # Past the limit an unknown id is a transaction we skipped, not an orphan.
                    if not stopped:
                        counts["labels"] += 1
                        counts["unknown"] += 1
                    continue
                counts["labels"] += 1
                if labels[pos] != -1:
                    counts["duplicate"] += 1
                    continue
                y = row[3].strip() in ("1", "true", "True")
                labels[pos] = int(y)
                item = pending.pop(pos, None)
                if item is None:
                    continue
                t0 = perf()
                if y:
                    learn(features(*item), True, **fraud_kw)
                else:
                    learn(features(*item), False)
                timed += perf() - t0
                counts["learnt"] += 1
                if stopped and not pending:
                    break
            else:
                raise Fail(f"{path}:{lineno}: unknown row kind {kind!r} (expected T or L)")
    wall = perf() - wall0
    if n == 0:
        raise Fail(f"{path}: no transaction rows")

    import numpy as np

    sc = np.frombuffer(scores, dtype=np.float32)
    dy = np.frombuffer(days, dtype=np.int64)
    lb = np.frombuffer(labels, dtype=np.int8)
    keep = lb >= 0 if unlabeled == "ignore" else np.ones(len(lb), dtype=bool)
    y = lb == 1
    last = dy >= dy.max() - last_days + 1
    row = {
        "engine": f"river {name}",
        "model": desc,
        "transactions": n,
        "labels": counts["labels"],
        "labelled_transactions": int((lb >= 0).sum()),
        "frauds": int(y.sum()),
        "learnt": counts["learnt"],
        "labels_unknown": counts["unknown"],
        "labels_duplicate": counts["duplicate"],
        "model_seconds": timed,
        "wall_seconds": wall,
        "transactions_per_sec": n / timed if timed > 0 else None,
        "roc_auc": roc_auc(sc[keep], y[keep]),
        "average_precision": average_precision(sc[keep], y[keep]),
        "last_days_roc_auc": roc_auc(sc[keep & last], y[keep & last]),
        "last_days_average_precision": average_precision(sc[keep & last], y[keep & last]),
        "limit": limit,
    }
    if counts["bad_values"]:
        row["non_finite_or_empty_values_set_to_0"] = counts["bad_values"]
    if counts["replaced_tx"]:
        row["duplicate_tx_ids"] = counts["replaced_tx"]
    return row


# --------------------------------------------------------------------------- output


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[dict], engine_tps: float | None) -> None:
    cols = ["engine", "transactions", "samples/s", "AUC all", "AP all", "AUC last", "AP last",
            "fs/river speed"]
    lines = []
    for r in rows:
        tps = r.get("transactions_per_sec")
        ratio = (engine_tps / tps) if engine_tps and tps and not r["engine"] == "fraudstream" else None
        lines.append([
            str(r["engine"]), fmt(r.get("transactions"), ","), fmt(tps, ",.0f"),
            fmt(r.get("roc_auc"), ".4f"), fmt(r.get("average_precision"), ".4f"),
            fmt(r.get("last_days_roc_auc"), ".4f"), fmt(r.get("last_days_average_precision"), ".4f"),
            "1.0x" if r["engine"] == "fraudstream" else (fmt(ratio, ",.1f") + ("x" if ratio else "")),
        ])
    widths = [max(len(c), *(len(l[i]) for l in lines)) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for l in lines:
        out.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(l, widths))))
    print("\n".join(out))


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(
        description="Compare fraudstream with River on the same stream (test-then-train). "
                    "Arguments after `--` are passed to `fraudstream bench`.")
    p.add_argument("--export", type=Path, help="reuse this export file instead of running cargo")
    p.add_argument("--days", type=int, help="passed to the engine as --set source.days=N")
    p.add_argument("--models", default="lr,arf", help="comma-separated River models: lr, arf (default both)")
    p.add_argument("--limit", type=int, help="process only the first N transaction rows")
    p.add_argument("--arf-limit", type=int, default=100_000,
                   help="at most this many transactions for arf (default 100000; 0 = no cap)")
    p.add_argument("--last-days", type=int, default=30, help="window of the 'last days' metrics (default 30)")
    p.add_argument("--unlabeled", choices=["genuine", "ignore"], default="genuine",
                   help="transactions whose label never arrived: count as genuine (engine default) or leave out")
    p.add_argument("--synthetic", type=int, metavar="N",
                   help="write a synthetic export with N transactions (to --export, default "
                        "target/river-synthetic.csv) and compare River on it; no cargo run")
    p.add_argument("--json", type=Path, default=RESULT_JSON, help="where to write the results (default target/river-compare.json)")
    args = p.parse_args(own)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in args.models:
        if m not in MODELS:
            p.error(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    for opt in ("limit", "days", "synthetic"):
        v = getattr(args, opt)
        if v is not None and v <= 0:
            p.error(f"--{opt} must be positive")
    if args.synthetic and (args.days is not None or extra):
        p.error("--synthetic does not run the engine: --days / extra engine args make no sense")
    if args.export and (args.days is not None or extra) and not args.synthetic:
        p.error("--export reuses a file: --days / extra engine args make no sense")
    return args, extra


def main(argv: list[str]) -> int:
    args, extra = parse_args(argv)
    ensure_venv_and_reexec(argv)  # returns only inside the venv
    import river

    wall0 = time.perf_counter()
    notes: list[str] = []
    if args.synthetic:
        export = (args.export or SYNTHETIC_EXPORT).resolve()
        write_synthetic(export, args.synthetic)
        engine = None
        notes.append(f"synthetic stream ({args.synthetic} transactions): no fraudstream row")
        source = "synthetic"
    elif args.export:
        export = args.export.resolve()
        if not export.exists():
            raise Fail(f"export file {export} does not exist")
        engine = load_sidecar(export)
        source = "export"
        if engine is None:
            notes.append(f"no {sidecar(export).name} next to the export: no fraudstream row")
    else:
        export = DEFAULT_EXPORT
        engine = run_engine(export, args.days, extra)
        source = "engine run"
    if engine is not None:
        engine = dict(engine, engine="fraudstream")
        if args.limit:
            notes.append("fraudstream figures cover the whole stream; River rows cover --limit transactions")

    rows = [engine] if engine else []
    for name in args.models:
        limit = args.limit
        if name == "arf" and args.arf_limit:
            limit = min(limit, args.arf_limit) if limit else args.arf_limit
        print(f"[river-compare] river {name} on {export} (limit {limit or 'none'})", file=sys.stderr)
        r = replay(export, name, limit, args.unlabeled, args.last_days)
        if name == "arf" and args.arf_limit and r["transactions"] >= args.arf_limit:
            notes.append(f"river arf capped at the first {args.arf_limit:,} transactions (--arf-limit)")
        rows.append(r)

    engine_tps = engine.get("transactions_per_sec") if engine else None
    for r in rows:
        tps = r.get("transactions_per_sec")
        if r is not engine:
            r["speed_ratio_fraudstream_over_river"] = engine_tps / tps if engine_tps and tps else None
    notes.append(f"River samples/s = transactions / time in predict_proba_one + learn_one + dict building; "
                 f"fraudstream's is its own end-to-end transactions_per_sec")
    notes.append(f"last days = last {args.last_days} days of transaction time; unlabeled = {args.unlabeled}")

    print()
    print(f"fraudstream vs River {river.__version__} — {source}: {export}")
    print_table(rows, engine_tps)
    for r in rows:
        if r is not engine:
            print(f"  {r['engine']}: {r['model']}; model time {r['model_seconds']:.1f}s, "
                  f"wall {r['wall_seconds']:.1f}s, labelled {r['labelled_transactions']:,}, "
                  f"frauds {r['frauds']:,}, unknown labels {r['labels_unknown']:,}")
    if engine:
        print("  fraudstream: " + ", ".join(f"{k}={v}" for k, v in engine.items() if k != "engine"))
    for n in notes:
        print(f"  note: {n}")

    result = {
        "river_version": river.__version__,
        "python": sys.version.split()[0],
        "source": source,
        "export": str(export),
        "last_days": args.last_days,
        "unlabeled": args.unlabeled,
        "rows": rows,
        "notes": notes,
        "wall_seconds": time.perf_counter() - wall0,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  results: {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Fail as e:
        print(f"river_compare: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
