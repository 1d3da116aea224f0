//! `report.html`: one self-contained page (inline CSS, inline SVG charts, no
//! script, nothing fetched) with the run metadata, every case and every
//! [`Section`] of the run.
//!
//! Charts are drawn with plotters' SVG backend at render time from the
//! section data, so the JSON report and the page never disagree.

use std::fmt::Write as _;
use std::io::Write;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use crate::logaxis::LogAxis;
use crate::section::{Chart, ChartKind, Section, Table, XAxis};
use crate::timeaxis::TimeAxis;
use crate::{CaseResult, Format, Outcome, ReportError, RunReport, fmt};

/// Width and height of a chart's plot (caption, axes and data), in SVG pixels; its legend
/// is a band below, as tall as its rows need.
const CHART_SIZE: (u32, u32) = (860, 360);
/// Height of one row of the legend band, in SVG pixels.
const LEGEND_ROW: u32 = 24;
/// Where legend entries start: under the plot's left edge (margin plus y label area).
const LEGEND_LEFT: i32 = 92;

/// Font sizes: caption, axis descriptions, tick labels and legend. plotters' SVG backend
/// writes about 0.81 of the size given (16 → 12.9 px); at the page's width a chart is drawn
/// near its own size, so tick labels read at ~13 px, as body text's small print.
const CAPTION_FONT: u32 = 22;
const AXIS_FONT: u32 = 17;
const TICK_FONT: u32 = 16;

/// Series colours: colour-blind-safe (Okabe–Ito), in legend order.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// How one series is drawn: besides its colour, a dash pattern, a marker and a width, so that
/// series that coincide (achieved rate on the scheduled one, p99 on max) stay told apart in
/// greyscale and where one lies on another.
#[derive(Debug, Clone, Copy)]
struct Look {
    color: RGBColor,
    /// `(dash, gap)` in pixels; `None` for a solid line.
    dash: Option<(u32, u32)>,
    marker: Mark,
    width: u32,
}

/// A point marker shape.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mark {
    Dot,
    Triangle,
    Cross,
    Ring,
}

/// The look of series `i`: the first solid and widest, so later ones drawn on top of it
/// leave its edges showing.
fn look(i: usize) -> Look {
    Look {
        color: PALETTE[i % PALETTE.len()],
        dash: [None, Some((10, 5)), Some((3, 4)), Some((16, 4))][i % 4],
        marker: [Mark::Dot, Mark::Triangle, Mark::Cross, Mark::Ring][i % 4],
        width: if i == 0 { 4 } else { 2 },
    }
}

/// Characters past which a table cell is long text, given a readable minimum width.
const LONG_CELL: usize = 60;

/// Line opacity: where lines cross, the one below shows through.
const LINE_OPACITY: f64 = 0.85;
/// Markers per series, spread along it.
const MARKS_PER_SERIES: usize = 12;

/// Writes `report` as a self-contained HTML page.
///
/// # Errors
///
/// [`ReportError::Write`] when `out` fails. A chart plotters cannot draw
/// (no finite points, say) is replaced by a note saying so, not an error.
pub fn write(report: &RunReport, mut out: impl Write) -> Result<(), ReportError> {
    let page = render(report);
    out.write_all(page.as_bytes())
        .map_err(|source| ReportError::Write {
            format: Format::Html,
            source,
        })
}

/// The page as a string. `fmt::Write` into a `String` cannot fail, hence the
/// ignored results below.
fn render(report: &RunReport) -> String {
    let meta = &report.meta;
    let verdict = fmt::verdict(report);
    let headline = fmt::headline(report);
    let ran = headline.strip_prefix(verdict).unwrap_or_default();
    let mut page = String::with_capacity(64 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Gauntlet run: {headline}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Gauntlet run: <span class=\"verdict {class}\">{verdict}</span>{ran}</h1>\n",
        class = verdict.to_ascii_lowercase(),
    );

    page.push_str("<table class=\"meta\">\n");
    let rows = [
        ("Target", meta.target.clone()),
        ("Profile", meta.profile.clone()),
        ("Seed", fmt::seed(meta.seed)),
        ("Git commit", fmt::git_commit(meta).to_owned()),
        (
            "Tool version",
            format!("{} {}", meta.tool, meta.tool_version),
        ),
        ("Started", fmt::timestamp(meta.started_at)),
        ("Duration", fmt::duration_secs(meta.wall_time())),
        ("Cases", fmt::counts(&report.summary)),
    ];
    for (name, value) in rows {
        let _ = writeln!(page, "<tr><th>{name}</th><td>{}</td></tr>", escape(&value));
    }
    page.push_str("</table>\n");

    if !report.sections.is_empty() {
        page.push_str("<nav><strong>Sections:</strong> ");
        for (i, section) in report.sections.iter().enumerate() {
            if i > 0 {
                page.push_str(" · ");
            }
            let _ = write!(
                page,
                "<a href=\"#{}\">{}</a>",
                anchor(&section.id),
                escape(&section.title)
            );
        }
        page.push_str("</nav>\n");
    }

    for (suite, cases) in report.suites() {
        let _ = writeln!(page, "<h2>Suite <code>{}</code></h2>", escape(suite));
        cases_table(&mut page, &cases);
    }
    if let Some(matrix) = &report.traceability {
        traceability_html(&mut page, matrix);
    }
    for section in &report.sections {
        section_html(&mut page, section);
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn cases_table(page: &mut String, cases: &[&CaseResult]) {
    page.push_str(
        "<table class=\"cases\">\n<tr><th>Outcome</th><th>Case</th><th>Requirements</th>\
         <th class=\"num\">Duration (ms)</th><th>Message</th></tr>\n",
    );
    for case in cases {
        let status = fmt::status(&case.outcome);
        let message = match (&case.outcome, &case.message) {
            (Outcome::Pass, None) => String::new(),
            _ => fmt::message(case).to_owned(),
        };
        let _ = writeln!(
            page,
            "<tr class=\"{class}\"><td class=\"status\">{status}</td><td><code>{id}</code></td>\
             <td>{reqs}</td><td class=\"num\">{ms}</td><td><pre>{message}</pre></td></tr>",
            class = status.to_ascii_lowercase(),
            id = escape(&case.id),
            reqs = escape(&fmt::requirements(&case.requirements)),
            ms = fmt::duration_ms(case.duration),
            message = escape(message.trim_end()),
        );
    }
    page.push_str("</table>\n");
}

fn section_html(page: &mut String, section: &Section) {
    let _ = writeln!(
        page,
        "<section id=\"{}\">\n<h2>{}</h2>",
        anchor(&section.id),
        escape(&section.title)
    );
    for note in &section.notes {
        let _ = writeln!(page, "<p class=\"note\">{}</p>", escape(note));
    }
    // Charts before tables: a reader takes in the curves first (the backtest's equity curve,
    // the load's latency over time), then looks up the figures.
    for chart in &section.charts {
        page.push_str("<figure>\n");
        match chart_svg(chart) {
            Ok(svg) => page.push_str(&svg),
            Err(reason) => {
                let _ = write!(
                    page,
                    "<p class=\"note\">Chart “{}” not drawn: {}</p>",
                    escape(&chart.title),
                    escape(&reason)
                );
            }
        }
        page.push_str("\n</figure>\n");
    }
    for table in &section.tables {
        table_html(page, table);
    }
    page.push_str("</section>\n");
}

fn table_html(page: &mut String, table: &Table) {
    // In a box of its own that scrolls sideways when the table is wider than the page.
    let _ = write!(
        page,
        "<div class=\"scroll\"><table class=\"data\">\n<caption>{}</caption>\n<tr>",
        escape(&table.title)
    );
    for column in &table.columns {
        let _ = write!(page, "<th>{}</th>", escape(column));
    }
    page.push_str("</tr>\n");
    for row in &table.rows {
        page.push_str("<tr>");
        for cell in row {
            // Numbers stay on one line; long text keeps a readable width and wraps, and the
            // box scrolls sideways when the row is wider than the page.
            let class = if looks_numeric(cell) {
                " class=\"num\""
            } else if cell.chars().count() > LONG_CELL {
                " class=\"long\""
            } else {
                ""
            };
            let _ = write!(page, "<td{class}>{}</td>", escape(cell));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table></div>\n");
}

/// The chart as an `<svg>` element, or why it cannot be drawn.
pub fn chart_svg(chart: &Chart) -> Result<String, String> {
    let rows = legend_rows(chart);
    let legend_height = if rows.is_empty() {
        0
    } else {
        rows.len() as u32 * LEGEND_ROW + 8
    };
    let mut svg = String::new();
    {
        let size = (CHART_SIZE.0, CHART_SIZE.1 + legend_height);
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        // The legend in a band of its own under the plot: it never covers a line.
        let (plot, legend) = root.split_vertically(CHART_SIZE.1);
        match chart.kind {
            ChartKind::Line => draw_line(&plot, chart)?,
            ChartKind::Bar => draw_bar(&plot, chart)?,
        }
        draw_legend(&legend, chart, &rows)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The legend's entries laid out in rows across the chart's width: `(series index, x)`.
/// None for a single unnamed series.
fn legend_rows(chart: &Chart) -> Vec<Vec<(usize, i32)>> {
    if chart.series.len() < 2 && chart.series.iter().all(|s| s.name.is_empty()) {
        return Vec::new();
    }
    let right = CHART_SIZE.0 as i32 - 12;
    let mut rows: Vec<Vec<(usize, i32)>> = vec![Vec::new()];
    let mut x = LEGEND_LEFT;
    for (i, series) in chart.series.iter().enumerate() {
        // A swatch of 30 px, a gap, the name at ~7.5 px a character, and room before the next.
        let chars = i32::try_from(series.name.chars().count()).unwrap_or(i32::MAX / 16);
        let width = 44 + (chars * 15 + 1) / 2 + 18;
        if x + width > right && x > LEGEND_LEFT {
            rows.push(Vec::new());
            x = LEGEND_LEFT;
        }
        if let Some(row) = rows.last_mut() {
            row.push((i, x));
        }
        x += width;
    }
    rows
}

/// Draws the legend band: each series' line sample (dash and marker) or bar swatch, and name.
fn draw_legend(area: &Area<'_>, chart: &Chart, rows: &[Vec<(usize, i32)>]) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    for (r, row) in rows.iter().enumerate() {
        let y = 14 + r as i32 * LEGEND_ROW as i32;
        for &(i, x) in row {
            let look = look(i);
            let style = look.color.mix(LINE_OPACITY).stroke_width(look.width);
            if chart.kind == ChartKind::Bar {
                area.draw(&Rectangle::new(
                    [(x + 6, y - 7), (x + 24, y + 7)],
                    look.color.filled(),
                ))
                .map_err(err)?;
            } else {
                match look.dash {
                    None => area
                        .draw(&PathElement::new(vec![(x, y), (x + 30, y)], style))
                        .map_err(err)?,
                    Some((dash, gap)) => area
                        .draw(&plotters::element::DashedPathElement::new(
                            vec![(x, y), (x + 30, y)],
                            dash,
                            gap,
                            style,
                        ))
                        .map_err(err)?,
                }
                let at = (x + 15, y);
                match look.marker {
                    Mark::Dot => area.draw(&Circle::new(at, 4, look.color.filled())),
                    Mark::Ring => area.draw(&Circle::new(at, 4, look.color.stroke_width(2))),
                    Mark::Triangle => area.draw(&TriangleMarker::new(at, 5, look.color.filled())),
                    Mark::Cross => area.draw(&Cross::new(at, 4, look.color.stroke_width(2))),
                }
                .map_err(err)?;
            }
            area.draw(&Text::new(
                chart.series[i].name.clone(),
                (x + 38, y - 7),
                ("sans-serif", TICK_FONT).into_font(),
            ))
            .map_err(err)?;
        }
    }
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// The finite range of `values` (positive only when `log`), padded so that a
/// flat series still gets a visible axis.
fn axis_range(values: impl Iterator<Item = f64>, log: bool) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .fold(None, |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })?;
    if log {
        return Some(if hi > lo {
            (lo, hi)
        } else {
            (lo / 2.0, hi * 2.0)
        });
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.5
    };
    Some((lo - pad, hi + pad))
}

fn draw_line(root: &Area<'_>, chart: &Chart) -> Result<(), String> {
    let points = || chart.series.iter().flat_map(|s| s.points.iter());
    let (y0, y1) =
        axis_range(points().map(|p| p[1]), chart.log_y).ok_or("no finite points to draw")?;
    if chart.x_axis == XAxis::Time {
        // Dates run edge to edge, from the first point to the last: no padding.
        let (x0, x1) = points()
            .map(|p| p[0])
            .filter(|x| x.is_finite())
            .fold(None, |acc: Option<(f64, f64)>, x| match acc {
                None => Some((x, x)),
                Some((lo, hi)) => Some((lo.min(x), hi.max(x))),
            })
            .ok_or("no finite points to draw")?;
        let axis = TimeAxis::new(x0, if x1 > x0 { x1 } else { x0 + 1.0 });
        return if chart.log_y {
            lines(root, chart, axis, LogAxis::new(y0, y1))
        } else {
            lines(root, chart, axis, y0..y1)
        };
    }
    let (x0, x1) =
        axis_range(points().map(|p| p[0]), chart.log_x).ok_or("no finite points to draw")?;
    // Log axes are labelled at 1-2-5 steps (plotters' own labels only powers of ten).
    match (chart.log_x, chart.log_y) {
        (false, false) => lines(root, chart, x0..x1, y0..y1),
        (true, false) => lines(root, chart, LogAxis::new(x0, x1), y0..y1),
        (false, true) => lines(root, chart, x0..x1, LogAxis::new(y0, y1)),
        (true, true) => lines(root, chart, LogAxis::new(x0, x1), LogAxis::new(y0, y1)),
    }
}

fn lines<X, Y>(root: &Area<'_>, chart: &Chart, x: X, y: Y) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", CAPTION_FONT))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    // Numbers read as people write them (1000, 0.5), not as plotters' `1000.0`; a time axis
    // keeps its dates.
    let number = |v: &f64| crate::logaxis::label(*v);
    let mut mesh = ctx.configure_mesh();
    mesh.x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .label_style(("sans-serif", TICK_FONT))
        .axis_desc_style(("sans-serif", AXIS_FONT))
        .light_line_style(RGBColor(235, 235, 235))
        .y_label_formatter(&number);
    if chart.x_axis == XAxis::Number {
        mesh.x_label_formatter(&number);
    }
    mesh.draw().map_err(|e| e.to_string())?;
    let (x_range, y_range) = (ctx.x_range(), ctx.y_range());
    let grey = RGBColor(110, 110, 110);
    for marker in chart.markers.iter().filter(|m| x_range.contains(&m.x)) {
        ctx.draw_series(std::iter::once(PathElement::new(
            vec![(marker.x, y_range.start), (marker.x, y_range.end)],
            grey.stroke_width(1),
        )))
        .map_err(|e| e.to_string())?;
        // The label at the line's foot, clear of the data's usual peaks.
        let label = EmptyElement::at((marker.x, y_range.start))
            + Text::new(
                marker.label.clone(),
                (4, -(TICK_FONT as i32) - 2),
                ("sans-serif", TICK_FONT - 2).into_font().color(&grey),
            );
        ctx.draw_series(std::iter::once(label))
            .map_err(|e| e.to_string())?;
    }
    let keep = |p: &&[f64; 2]| {
        p[0].is_finite()
            && p[1].is_finite()
            && (!chart.log_x || p[0] > 0.0)
            && (!chart.log_y || p[1] > 0.0)
    };
    let n = chart.series.len().max(1);
    for (i, series) in chart.series.iter().enumerate() {
        let look = look(i);
        let style = look.color.mix(LINE_OPACITY).stroke_width(look.width);
        let points = series.points.iter().filter(keep).map(|p| (p[0], p[1]));
        match look.dash {
            None => ctx.draw_series(LineSeries::new(points.clone(), style)),
            Some((dash, gap)) => {
                ctx.draw_series(DashedLineSeries::new(points.clone(), dash, gap, style))
            }
        }
        .map_err(|e| e.to_string())?;
        // Markers spread along the series, each series starting at its own offset so that
        // the markers of coinciding series do not land on one another.
        let count = points.clone().count();
        let every = count.div_ceil(MARKS_PER_SERIES).max(1);
        let offset = i * every / n;
        let marks = points
            .enumerate()
            .filter(move |(j, _)| j % every == offset % every);
        let marks = marks.map(|(_, p)| p);
        match look.marker {
            Mark::Dot => ctx.draw_series(marks.map(|p| Circle::new(p, 4, look.color.filled()))),
            Mark::Ring => {
                ctx.draw_series(marks.map(|p| Circle::new(p, 4, look.color.stroke_width(2))))
            }
            Mark::Triangle => {
                ctx.draw_series(marks.map(|p| TriangleMarker::new(p, 5, look.color.filled())))
            }
            Mark::Cross => {
                ctx.draw_series(marks.map(|p| Cross::new(p, 4, look.color.stroke_width(2))))
            }
        }
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn draw_bar(root: &Area<'_>, chart: &Chart) -> Result<(), String> {
    let n = chart.categories.len();
    if n == 0 {
        return Err("a bar chart needs categories".into());
    }
    let values = || {
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p[1]))
    };
    let (y0, y1) = axis_range(values().chain([0.0]), false).ok_or("no finite bars to draw")?;
    let categories = chart.categories.clone();
    let label = move |v: &f64| {
        let i = v.round();
        if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < categories.len() {
            categories[i as usize].clone()
        } else {
            String::new()
        }
    };
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", CAPTION_FONT))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), y0..y1)
        .map_err(|e| e.to_string())?;
    ctx.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .label_style(("sans-serif", TICK_FONT))
        .axis_desc_style(("sans-serif", AXIS_FONT))
        .x_labels(n.min(40))
        .x_label_formatter(&label)
        .disable_x_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| e.to_string())?;
    let width = 0.8 / chart.series.len().max(1) as f64;
    for (i, series) in chart.series.iter().enumerate() {
        let color = look(i).color;
        let bars = series
            .points
            .iter()
            .filter(|p| p[0].is_finite() && p[1].is_finite())
            .map(|p| {
                let left = p[0] - 0.4 + i as f64 * width;
                Rectangle::new([(left, 0.0), (left + width, p[1])], color.filled())
            });
        ctx.draw_series(bars).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The traceability matrix: one row per clause, uncovered ones included.
fn traceability_html(page: &mut String, matrix: &crate::Traceability) {
    page.push_str("<h2 id=\"traceability\">Compliance traceability</h2>\n");
    let _ = writeln!(page, "<p>{}</p>", escape(&matrix.evidence_line()));
    page.push_str(
        "<table>\n<tr><th>Clause</th><th>Requirements</th><th>Cases</th><th>Verdict</th></tr>\n",
    );
    for row in &matrix.clauses {
        let _ = writeln!(
            page,
            "<tr><td>{}: {}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(&row.clause),
            escape(&row.title),
            escape(&fmt::requirements(&row.requirements)),
            escape(&crate::traceability::cases_cell(row)),
            row.status.label(),
            row.status.label(),
        );
    }
    page.push_str("</table>\n");
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A fragment identifier made of `[A-Za-z0-9_-]` only.
fn anchor(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Cells that read as numbers are right-aligned: `1.23`, `-4 %`, `12.0 ms`.
fn looks_numeric(cell: &str) -> bool {
    let head = cell.split_whitespace().next().unwrap_or("");
    !head.is_empty() && head.trim_start_matches(['-', '+']).parse::<f64>().is_ok()
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;\
padding:0 1rem;color:#1b1b1b}\
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}\
.verdict.passed{color:#08751f}.verdict.failed{color:#b3001b}\
table{border-collapse:collapse;margin:0.6rem 0;font-size:0.9rem}\
th,td{border:1px solid #ddd;padding:0.25rem 0.5rem;text-align:left;vertical-align:top}\
th{background:#f4f4f4}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
table.meta th{width:9rem}caption{text-align:left;font-weight:600;padding:0.3rem 0}\
pre{margin:0;white-space:pre-wrap;font-size:0.85rem}code{font-size:0.85rem}\
tr.fail td.status,tr.error td.status{color:#b3001b;font-weight:700}\
tr.invalid td.status{color:#a05a00;font-weight:700}tr.pass td.status{color:#08751f}\
tr.skip td.status{color:#777}\
figure{margin:0.8rem 0}svg{max-width:100%;height:auto}p.note{color:#444;font-size:0.9rem}\
nav{margin:1rem 0}\
div.scroll{max-width:100%;overflow-x:auto}table.data td{max-width:28rem;overflow-wrap:break-word}\
table.data th,table.data td.num{white-space:nowrap}table.data td.long{min-width:20rem}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::section::Series;

    #[test]
    fn escape_and_anchor_neutralise_markup() {
        assert_eq!(
            escape("<script>\"x\" & 'y'"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;"
        );
        assert_eq!(anchor("load.sustained 10k/s"), "load-sustained-10k-s");
    }

    /// The tear sheet's order: the charts (the equity curve first) above the tables.
    #[test]
    fn a_sections_charts_come_before_its_tables() {
        let mut section = Section::new("backtest.cli", "Backtest", "backtest");
        section.tables.push(Table {
            title: "Metrics".into(),
            columns: vec!["metric".into(), "value".into()],
            rows: vec![vec!["total return".into(), "12.00 %".into()]],
        });
        section.charts.push(
            Chart::line("Equity", "t", "equity")
                .with_series(Series::new("strategy", vec![[0.0, 1.0], [1.0, 1.1]])),
        );
        let mut page = String::new();
        section_html(&mut page, &section);
        let figure = page.find("<figure>").expect("the chart is drawn");
        let table = page.find("<caption>Metrics</caption>").expect("the table");
        assert!(figure < table, "{page}");
    }

    #[test]
    fn a_chart_without_finite_points_is_explained_not_drawn() {
        let chart = Chart::line("empty", "t (s)", "ms")
            .with_series(Series::new("p99", vec![[0.0, f64::NAN]]));
        let reason = chart_svg(&chart).unwrap_err();
        assert!(reason.contains("no finite points"), "{reason}");
    }

    #[test]
    fn a_time_axis_reads_as_dates_and_markers_are_drawn() {
        // 2024-01-01 to 2026-06-30 (Unix seconds), daily points.
        let start = 1_704_067_200.0;
        let points: Vec<[f64; 2]> = (0..912)
            .map(|d| [start + f64::from(d) * 86_400.0, 1.0 + f64::from(d) * 1e-3])
            .collect();
        let chart = Chart::timeline("equity", "equity")
            .with_series(Series::new("strategy", points))
            .with_marker(start + 400.0 * 86_400.0, "fold 2");
        let svg = chart_svg(&chart).unwrap();
        // Every text element's content, as drawn.
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| {
                t.split_once('>')
                    .and_then(|(_, rest)| rest.split_once("</text>"))
            })
            .map(|(text, _)| text.trim())
            .collect();
        let ticks: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| t.starts_with("20"))
            .collect();
        assert_eq!(
            ticks,
            ["2024-01", "2024-07", "2025-01", "2025-07", "2026-01"],
            "half-year ticks on the calendar, as year-month: {texts:?}"
        );
        assert!(svg.contains("fold 2"), "the marker's label");
        assert!(svg.contains("date (UTC)"));
    }

    /// Every `<text>` of an SVG as `(y, content)`.
    fn texts(svg: &str) -> Vec<(f64, String)> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let (attrs, rest) = t.split_once('>')?;
                let (text, _) = rest.split_once("</text>")?;
                let y = attrs
                    .split(" y=\"")
                    .nth(1)?
                    .split('"')
                    .next()?
                    .parse()
                    .ok()?;
                Some((y, text.trim().to_owned()))
            })
            .collect()
    }

    /// Regression: a log axis was labelled at powers of ten only, so 0.3–40 ms had labels at
    /// 1 and 10 and nothing else, and a chart inside one decade had no y label at all.
    #[test]
    fn log_axes_are_labelled_at_1_2_5_steps() {
        let mut chart = Chart::line("latency", "time (s)", "latency (ms)").with_series(
            Series::new("p99", vec![[0.0, 0.3], [1.0, 4.0], [2.0, 40.0]]),
        );
        chart.log_y = true;
        let labels: Vec<String> = texts(&chart_svg(&chart).unwrap())
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        for want in ["0.2", "0.5", "1", "2", "5", "10", "20", "50"] {
            assert!(labels.iter().any(|l| l == want), "{want} in {labels:?}");
        }
        let mut narrow = Chart::line("latency", "time (s)", "latency (ms)")
            .with_series(Series::new("p50", vec![[0.0, 3.1], [1.0, 4.4]]));
        narrow.log_y = true;
        let labels: Vec<String> = texts(&chart_svg(&narrow).unwrap())
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        for want in ["2", "3", "4", "5"] {
            assert!(labels.iter().any(|l| l == want), "{want} in {labels:?}");
        }
    }

    /// Regression: the legend sat in the plot's upper left, over the lines.
    #[test]
    fn the_legend_is_drawn_below_the_plot_not_over_it() {
        let chart = Chart::line("throughput", "time (s)", "requests per second")
            .with_series(Series::new("scheduled", vec![[0.0, 100.0], [5.0, 100.0]]))
            .with_series(Series::new("ok", vec![[0.0, 100.0], [5.0, 100.0]]))
            .with_series(Series::new("errors", vec![[0.0, 0.0], [5.0, 0.0]]));
        let svg = chart_svg(&chart).unwrap();
        for name in ["scheduled", "ok", "errors"] {
            let (y, _) = texts(&svg)
                .into_iter()
                .find(|(_, t)| t == name)
                .unwrap_or_else(|| panic!("legend entry {name}"));
            assert!(y > f64::from(CHART_SIZE.1), "{name} at y {y}");
        }
        // Coinciding series are drawn differently: a solid line and a dashed one (many
        // short segments), and markers of their own.
        assert!(svg.matches("<polyline").count() > 4, "dashes are segments");
        assert!(svg.contains("<circle"), "the first series' markers");
        // A single unnamed series needs no legend: the SVG is the plot's height.
        let single = Chart::line("x", "t", "y").with_series(Series::new("", vec![[0.0, 1.0]]));
        let svg = chart_svg(&single).unwrap();
        assert!(
            svg.contains(&format!("height=\"{}\"", CHART_SIZE.1)),
            "{}",
            &svg[..120]
        );
    }

    #[test]
    fn wide_tables_scroll_inside_their_own_box() {
        let table = Table {
            title: "Runs".into(),
            columns: (0..20).map(|i| format!("column {i}")).collect(),
            rows: vec![(0..20).map(|i| format!("cell {i}")).collect()],
        };
        let mut page = String::new();
        table_html(&mut page, &table);
        assert!(page.starts_with("<div class=\"scroll\"><table"), "{page}");
        assert!(page.trim_end().ends_with("</table></div>"));
        assert!(STYLE.contains("div.scroll{max-width:100%;overflow-x:auto}"));
        let long = Table {
            title: "Runs".into(),
            columns: vec!["run".into(), "p99".into(), "validity".into()],
            rows: vec![vec![
                "sustained".into(),
                "2.11 ms".into(),
                "valid, ".repeat(12),
            ]],
        };
        let mut page = String::new();
        table_html(&mut page, &long);
        assert!(page.contains("<td class=\"num\">2.11 ms</td>"), "{page}");
        assert!(page.contains("<td class=\"long\">valid, "), "{page}");
    }

    #[test]
    fn log_axes_draw_positive_points_only() {
        let mut chart = Chart::line("percentiles", "percentile", "latency (ms)").with_series(
            Series::new("latency", vec![[0.0, 1.0], [90.0, 2.0], [99.9, 30.0]]),
        );
        chart.log_y = true;
        let svg = chart_svg(&chart).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
        assert!(
            svg.contains("polyline") || svg.contains("path"),
            "a line is drawn"
        );
    }
}
