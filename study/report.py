"""``python -m study report STUDY``: acceptance rates with intervals, per-photo rates, sentinels,
a bar chart (PNG) and CSV files.

Acceptance rate = the share of a model's colourised photos judged real: in the single-image
protocol, answered "real"; in 2AFC, the original was picked as the fake one (so 50 % means
indistinguishable). Only test trials count, and participants whose sentinel accuracy is below
the study's threshold are left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import select

from .db import Database, Participant, Response, Study, Trial, masked, recorded_database
from .db import database_url as resolve_url
from .design import REAL, SENTINEL, chance_pass_rate, sentinels_needed
from .errors import fail
from .exports import csv_table
from .files import write_atomically
from .manifest import Manifest, read_manifest
from .stats import bootstrap_interval, excluded_participants, rates_by, sentinel_accuracy

RESPONSE_COLUMNS = [
    "participant",
    "position",
    "phase",
    "condition",
    "photo",
    "fake_side",
    "answer",
    "correct",
    "judged_real",
    "rt_ms",
    "answered_at",
]


def load_responses(db: Database, public_id: str) -> pd.DataFrame:
    """Every stored answer of the study, one row each (participants by number, not token)."""
    query = (
        select(
            Participant.id,
            Trial.position,
            Trial.phase,
            Trial.condition,
            Trial.photo,
            Trial.fake_side,
            Response.answer,
            Response.correct,
            Response.judged_real,
            Response.rt_ms,
            Response.created_at,
        )
        .join(Trial, Response.trial_id == Trial.id)
        .join(Participant, Response.participant_id == Participant.id)
        .join(Study, Participant.study_id == Study.id)
        .where(Study.public_id == public_id)
        .order_by(Participant.id, Trial.position)
    )
    with db.read() as session:
        rows = session.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=RESPONSE_COLUMNS)
    frame["correct"] = frame["correct"].astype(bool)
    frame["judged_real"] = frame["judged_real"].astype(bool)
    return frame


@dataclass
class Report:
    protocol: str
    models: pd.DataFrame  # per condition: n, k, rate, Wilson and bootstrap intervals
    photos: pd.DataFrame  # per photo and condition
    sentinels: pd.DataFrame  # per participant
    responses: pd.DataFrame
    threshold: float
    excluded: set
    sentinels_planned: int | None = None  # sentinel trials per participant

    @property
    def chance_pass(self) -> float | None:
        """How often someone answering at random passes the attention check."""
        if not self.sentinels_planned or self.threshold <= 0:  # 0: nobody is excluded
            return None
        return chance_pass_rate(self.sentinels_planned, self.threshold)

    @property
    def participants(self) -> int:
        return int(self.responses["participant"].nunique()) if not self.responses.empty else 0


def summarize(
    responses: pd.DataFrame,
    *,
    protocol: str,
    models: list[str],
    threshold: float,
    reps: int = 2000,
    seed: int = 0,
) -> Report:
    """Rates per model (and for real photos in the single protocol) from ``load_responses``."""
    test = responses[responses["phase"] == "test"]
    accuracy = sentinel_accuracy(test[test["condition"] == SENTINEL], threshold)
    excluded = excluded_participants(accuracy)
    kept = test[~test["participant"].isin(excluded) & (test["condition"] != SENTINEL)]
    order = [*models, REAL] if protocol == "single" else list(models)
    table = rates_by(kept, "condition", "judged_real").set_index("condition")
    table = table.reindex(order)
    table.index.name = "condition"
    table["n"] = table["n"].fillna(0).astype(int)
    table["k"] = table["k"].fillna(0).astype(int)
    lows, highs, people = [], [], []
    for condition in order:
        part = kept[kept["condition"] == condition]
        low, high = bootstrap_interval(
            part["judged_real"].to_numpy(float),
            part["participant"].to_numpy(),
            part["photo"].to_numpy(),
            reps=reps,
            seed=seed,
        )
        lows.append(low)
        highs.append(high)
        people.append(int(part["participant"].nunique()))
    table["participants"] = people
    table["bootstrap_low"] = lows
    table["bootstrap_high"] = highs
    table = table.reset_index()
    photos = rates_by(kept, ["photo", "condition"], "judged_real")
    return Report(protocol, table, photos, accuracy, responses, threshold, excluded)


def report_for(
    study_dir: str | os.PathLike,
    *,
    database_url: str | None = None,
    reps: int = 2000,
    seed: int = 0,
) -> Report:
    """The report of a STUDY folder, from the database its answers are in: ``database_url``,
    else ``$DATABASE_URL``, else the one recorded in the folder when it was prepared or served
    (see :func:`study.db.database_url`). A database that does not hold this study stops with
    a message instead of a report of nothing."""
    manifest = read_manifest(study_dir)
    url = resolve_url(study_dir, database_url)
    db = Database(url, create=False)
    try:
        if not db.holds_study(manifest.public_id):
            recorded = recorded_database(study_dir)
            where = recorded or f"the SQLite file in {study_dir}"
            fail(
                f"the database {masked(url)} holds no study {manifest.name!r}; this folder "
                f"records its answers in {where} (pass --database-url or set DATABASE_URL)"
            )
        return report_from_db(db, manifest, reps=reps, seed=seed)
    finally:
        db.dispose()


def report_from_db(db: Database, manifest: Manifest, *, reps: int = 2000, seed: int = 0) -> Report:
    report = summarize(
        load_responses(db, manifest.public_id),
        protocol=manifest.protocol,
        models=manifest.models,
        threshold=manifest.sentinel_threshold,
        reps=reps,
        seed=seed,
    )
    report.sentinels_planned = manifest.sentinels_per_participant
    return report


def plot(report: Report, path) -> None:
    """Bar chart of the acceptance rates with Wilson (bars) and bootstrap (grey) 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = report.models
    x = range(len(table))
    rates = table["rate"].fillna(0) * 100
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(table) + 2), 3.6), dpi=100)
    bar_colors = ["#9e9e9e" if c == REAL else "#3f7fbf" for c in table["condition"]]
    ax.bar(x, rates, color=bar_colors, width=0.6)
    for i, row in table.iterrows():
        if row["n"] == 0:
            continue
        centre = row["rate"] * 100
        ax.errorbar(
            i - 0.08,
            centre,
            yerr=[[centre - row["wilson_low"] * 100], [row["wilson_high"] * 100 - centre]],
            color="black",
            capsize=4,
            lw=1.2,
            label="Wilson 95 %" if i == 0 else None,
        )
        if pd.notna(row["bootstrap_low"]):
            ax.errorbar(
                i + 0.08,
                centre,
                yerr=[
                    [max(0.0, centre - row["bootstrap_low"] * 100)],
                    [max(0.0, row["bootstrap_high"] * 100 - centre)],
                ],
                color="#d0542c",
                capsize=4,
                lw=1.2,
                label="bootstrap 95 %" if i == 0 else None,
            )
        ax.text(i, 2, f"n={int(row['n'])}", ha="center", va="bottom", fontsize=8, color="white")
    if report.protocol == "2afc":
        ax.axhline(50, color="#888", ls="--", lw=0.8)
        ax.set_ylabel("judgements fooled (%)")
    else:
        ax.set_ylabel("judged real (%)")
    ax.set_xticks(list(x), list(table["condition"]))
    ax.set_ylim(0, 100)
    ax.set_title("Public acceptance by model")
    if table["n"].sum() > 0:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")  # a file name or a binary file object
    plt.close(fig)


def write_report(report: Report, out_dir: str | os.PathLike) -> dict[str, Path]:
    """CSV files and the chart in ``out_dir``; returns their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "models": out / "acceptance.csv",
        "photos": out / "photos.csv",
        "sentinels": out / "sentinels.csv",
        "responses": out / "responses.csv",
        "chart": out / "acceptance.png",
    }
    for kind, table in (
        ("models", report.models),
        ("photos", report.photos),
        ("sentinels", report.sentinels),
        ("responses", report.responses),
    ):
        write_atomically(paths[kind], csv_table(table).encode("utf-8"), prefix=".report-")
    plot(report, paths["chart"])
    return paths


def format_table(report: Report) -> str:
    """The per-model table as plain text (what the CLI prints)."""
    lines = [f"{'condition':<14}{'n':>6}{'rate':>8}  {'Wilson 95 %':<17}{'bootstrap 95 %':<17}"]
    for _, row in report.models.iterrows():
        if row["n"] == 0:
            lines.append(f"{row['condition']:<14}{0:>6}{'-':>8}")
            continue
        lines.append(
            f"{row['condition']:<14}{int(row['n']):>6}{row['rate'] * 100:>7.1f}%  "
            f"{row['wilson_low'] * 100:5.1f}-{row['wilson_high'] * 100:5.1f} %     "
            f"{row['bootstrap_low'] * 100:5.1f}-{row['bootstrap_high'] * 100:5.1f} %"
        )
    if report.chance_pass is not None:
        n = report.sentinels_planned
        lines.append(
            f"attention check: {n} sentinels per participant, {sentinels_needed(report.threshold, n)}"
            f" correct needed; a random clicker passes {report.chance_pass * 100:.1f}% of the time"
        )
    acc = report.sentinels
    if not acc.empty:
        lines.append(
            f"sentinel accuracy {acc['correct'].sum() / acc['sentinels'].sum() * 100:.1f}% "
            f"({int(acc['sentinels'].sum())} trials); excluded {len(report.excluded)} of "
            f"{report.participants} participants below {report.threshold * 100:.0f}%"
        )
    return "\n".join(lines)
