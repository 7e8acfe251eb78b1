"""Summary sheet of rehearsal attempts: one table row per attempt, then each attempt's lost
points with their reasons (PDF, reportlab)."""

from __future__ import annotations

from pathlib import Path

from fluoroplan.rehearsal.session import REHEARSAL_SCHEMA, RehearsalError

COLUMNS = ("#", "Trainee", "Date", "Case", "Target", "Score", "Shots", "Angle error",
           "End-point error")


def _num(v, fmt: str, unit: str) -> str:
    return "-" if v is None else f"{format(float(v), fmt)} {unit}".strip()


def summary_row(attempt: dict) -> dict:
    """The summary-sheet fields of one attempt (``fluoroplan.rehearsal/1`` JSON). An attempt
    that was not ended has no score: its score cell says so."""
    if attempt.get("schema") != REHEARSAL_SCHEMA:
        raise RehearsalError(
            f"not a rehearsal attempt (schema {attempt.get('schema')!r}, expected "
            f"{REHEARSAL_SCHEMA!r})")
    sc = attempt.get("score")
    m = (sc or {}).get("metrics", {})
    case = attempt.get("case", {})
    uid = case.get("series_instance_uid", "")
    case_txt = case.get("description") or ""
    tail = f"...{uid[-12:]}" if uid else case.get("fingerprint", "")
    tgt = attempt.get("target", {})
    return {
        "trainee": attempt.get("trainee") or "(unnamed)",
        "date": (attempt.get("started") or "")[:16].replace("T", " "),
        "case": f"{case_txt} {tail}".strip(),
        "target": f"{tgt.get('kind', '')}:{tgt.get('ref', '')}",
        "score": "not ended" if sc is None else f"{float(sc['total']):.1f}",
        "shots": str(m.get("shots", "-")),
        "angle_error": _num(m.get("bullseye_error_deg"), ".1f", "deg"),
        "endpoint_error": _num(m.get("tip_error_mm"), ".1f", "mm"),
        "lost": [] if sc is None else [(float(x["points"]), x["reason"]) for x in sc["lost"]],
    }


def write_summary_pdf(attempts: list[dict], path, title: str = "Rehearsal attempts") -> Path:
    """Write the summary sheet of ``attempts`` (attempt JSON dicts) to ``path``."""
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    rows = [summary_row(a) for a in attempts]
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    story = [Paragraph(escape(title), styles["Title"]),
             Paragraph(f"{len(rows)} attempt(s). Score out of 100: 30 bull's-eye angle, 15 "
                       "shots, 35 end point, 20 safety checks.", small), Spacer(1, 4 * mm)]
    data = [list(COLUMNS)]
    for n, r in enumerate(rows, 1):
        data.append([str(n), Paragraph(escape(r["trainee"]), small), r["date"],
                     Paragraph(escape(r["case"]), small), Paragraph(escape(r["target"]), small),
                     r["score"], r["shots"], r["angle_error"], r["endpoint_error"]])
    table = Table(data, repeatRows=1,
                  colWidths=[8 * mm, 35 * mm, 30 * mm, 55 * mm, 40 * mm, 18 * mm, 14 * mm,
                             24 * mm, 28 * mm])
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8),
        ("FONT", (0, 1), (-1, -1), "Helvetica", 8),
        ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]))
    story += [table, Spacer(1, 6 * mm), Paragraph("Lost points", styles["Heading2"])]
    for n, r in enumerate(rows, 1):
        story.append(Paragraph(f"<b>#{n} {escape(r['trainee'])}, {escape(r['target'])}: "
                               f"{escape(r['score'])}</b>", small))
        lost = [x for x in r["lost"] if x[0] > 0]
        if not lost:
            story.append(Paragraph("no points lost" if r["lost"] or r["score"] != "not ended"
                                   else "attempt not ended", small))
        for p, reason in lost:
            story.append(Paragraph(f"-{p:.1f}: {escape(reason)}", small))
        story.append(Spacer(1, 2 * mm))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    SimpleDocTemplate(str(path), pagesize=landscape(A4), title=title,
                      leftMargin=12 * mm, rightMargin=12 * mm, topMargin=12 * mm,
                      bottomMargin=12 * mm).build(story)
    return path
