"""What the report says and in which order, independent of its format (HTML or Markdown).

A reader gets the findings first (the answer paragraph, then each verdict as a sentence with its
numbers and seeds), then the plots, then the tables. Tables show the rows that hold data; rows
whose every statistic is missing (a ratio the sweep did not reach, a reference it did not run)
are folded away, and so are columns that are empty in every row. Every table is also written in
full as ``tables/<name>.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from paitune.analysis.sections import SECTIONS, Section

MISSING = "—"
NO_ANSWER = "no answer: the sweep compared no method with random and no allocations"
CSV_DIR = "tables"
# Sentences shown per findings group before "show all": enough for the decisive ones of a
# typical sweep, few enough to read in a minute.
SHOWN_FINDINGS = 8
# Verdicts that decide nothing; a group lists the decisive ones first and folds these.
UNDECIDED = ("inconclusive", "too_few_runs", "not_applicable")
# Numeric columns that locate a row (a level, an epoch) rather than measure something: a row
# with only these is a row without data.
KEY_COLUMNS = frozenset(
    {"sparsity", "target_sparsity", "compression", "ratio", "max_epochs", "epoch", "target_epoch", "common_epoch"}
)


@dataclass(frozen=True)
class TableView:
    """One table as the report shows it: rows with data, rows without, and the columns kept."""

    name: str
    n_rows: int
    rows: pd.DataFrame  # rows holding at least one statistic (empty columns dropped)
    empty_rows: pd.DataFrame  # rows whose every statistic is missing (same columns)
    empty_columns: tuple[str, ...]  # columns missing in every row, left out of the view
    numeric: frozenset[str]  # columns to right-align

    @property
    def csv(self) -> str:
        return csv_path(self.name)


def csv_path(name: str) -> str:
    """The CSV of a table, relative to the report."""
    return f"{CSV_DIR}/{name}.csv"


def _missing(column: pd.Series) -> pd.Series:
    missing = column.isna()
    if not pd.api.types.is_numeric_dtype(column):  # text columns: "" is no value either
        missing |= column.map(lambda v: isinstance(v, str) and not v.strip())
    return missing


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_numeric(column: pd.Series) -> bool:
    """Numbers in every non-missing cell (object columns of ints count: they right-align too)."""
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    values = column.dropna()
    return len(values) > 0 and bool(values.map(_is_number).all())


def _is_statistic(column: pd.Series) -> bool:
    # Floats, and object columns holding floats or nothing (an all-missing statistic).
    if pd.api.types.is_float_dtype(column):
        return True
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False
    values = column.dropna()
    return len(values) > 0 and bool(values.map(lambda v: isinstance(v, (float, np.floating))).all())


def table_view(name: str, table: pd.DataFrame) -> TableView:
    missing = table.apply(_missing) if len(table) else pd.DataFrame(index=table.index, columns=table.columns)
    empty_columns = tuple(c for c in table.columns if len(table) and bool(missing[c].all()))
    kept = table.drop(columns=list(empty_columns))
    # A statistic is a float column that does not locate the row: counts (n = 0) and levels
    # (ratio, sparsity) alone are no data.
    stats = [c for c in table.columns if _is_statistic(table[c]) and c not in KEY_COLUMNS]
    if stats and len(table):
        without = missing[stats].all(axis=1).to_numpy()
    else:
        without = np.zeros(len(table), dtype=bool)
    return TableView(
        name=name,
        n_rows=len(table),
        rows=kept.loc[~without],
        empty_rows=kept.loc[without],
        empty_columns=empty_columns,
        numeric=frozenset(c for c in kept.columns if _is_numeric(kept[c])),
    )


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_cell(value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class FindingGroup:
    """The verdict sentences of one section: decisive ones first, the rest folded."""

    anchor: str
    heading: str
    shown: tuple[str, ...]
    folded: tuple[str, ...]
    folded_tally: str  # e.g. "40 inconclusive, 2 too_few_runs"

    @property
    def folded_label(self) -> str:
        if self.shown:
            return f"{len(self.folded)} more ({self.folded_tally})"
        return f"{plural(len(self.folded), 'verdict')} without a decision ({self.folded_tally})"


def _tally(verdicts: pd.Series) -> str:
    counts = verdicts.replace("", "note").value_counts(sort=True)
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.items())


def finding_groups(tables: dict[str, pd.DataFrame]) -> list[FindingGroup]:
    findings = tables.get("findings")
    if findings is None or findings.empty:
        return []
    groups = []
    for section in SECTIONS:
        rows = findings.loc[findings["section"] == section.anchor]
        if rows.empty:
            continue
        decided = ~rows["verdict"].isin(UNDECIDED)
        ordered = pd.concat([rows.loc[decided], rows.loc[~decided]])
        shown = ordered.loc[decided].head(SHOWN_FINDINGS)
        folded = ordered.drop(index=shown.index)
        groups.append(
            FindingGroup(
                anchor=section.anchor,
                heading=section.heading,
                shown=tuple(shown["sentence"].astype(str)),
                folded=tuple(folded["sentence"].astype(str)),
                folded_tally=_tally(folded["verdict"]),
            )
        )
    return groups


def answer_text(tables: dict[str, pd.DataFrame]) -> str:
    answer = tables.get("answer")
    return "" if answer is None or answer.empty else " ".join(answer["sentence"].astype(str))


def notes(tables: dict[str, pd.DataFrame], anchor: str) -> list[str]:
    table = tables.get("notes")
    return [] if table is None or table.empty else [str(n) for n in table.loc[table["section"] == anchor, "note"]]


def meta_line(tables: dict[str, pd.DataFrame]) -> str:
    meta = tables["meta"].iloc[0]
    return (
        f"Sources: {meta['sources']}. {int(meta['n_trials'])} trials. Final accuracy = {meta['final_accuracy']}. "
        f"CIs: {meta['ci']}. Every table is in tables/ as CSV and in summary.json."
    )


def plots_by_section(images: dict[str, list[str]]) -> list[tuple[Section, list[str]]]:
    """(section, plot names) in reading order, sections without plots left out."""
    return [(s, images[s.anchor]) for s in SECTIONS if images.get(s.anchor)]
