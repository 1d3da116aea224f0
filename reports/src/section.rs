//! Sections: the tables and charts a measured suite (load, backtest) attaches to
//! a run, next to its gate cases.
//!
//! A section is data, not markup: the JSON report carries it for tools, the
//! Markdown summary prints its tables, and `report.html` draws its charts.

use serde::{Deserialize, Serialize};

/// Tables and charts about one measurement of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Stable identifier, unique in the run (`load.sustained`, `backtest.fixture`).
    pub id: String,
    /// Heading shown to people.
    pub title: String,
    /// The suite that produced it.
    pub suite: String,
    /// Short paragraphs: conventions, settings in force, caveats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Tables, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<Table>,
    /// Charts, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charts: Vec<Chart>,
    /// The section's figures at full precision, by stable key (`metrics.sharpe`); `null`
    /// marks a figure that is undefined on the run. Tables show them rounded for people.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub values: std::collections::BTreeMap<String, Option<f64>>,
    /// Clauses and evidence for the run's traceability matrix (see [`crate::Traceability`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceability: Option<crate::TraceabilitySpec>,
}

impl Section {
    /// An empty section.
    pub fn new(id: impl Into<String>, title: impl Into<String>, suite: impl Into<String>) -> Self {
        Section {
            id: id.into(),
            title: title.into(),
            suite: suite.into(),
            notes: Vec::new(),
            tables: Vec::new(),
            charts: Vec::new(),
            values: std::collections::BTreeMap::new(),
            traceability: None,
        }
    }
}

/// A table of text cells; every row has as many cells as there are columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Caption.
    pub title: String,
    /// Column headings.
    pub columns: Vec<String>,
    /// Rows of cells, already formatted.
    pub rows: Vec<Vec<String>>,
}

/// How a chart draws its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    /// Lines through the points of each series, in order.
    Line,
    /// Bars: point `[i, y]` of a series is the bar of [`Chart::categories`]`[i]`;
    /// the series of one category stand side by side.
    Bar,
}

/// What the x values of a line chart are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XAxis {
    /// Plain numbers, ticked at round values.
    #[default]
    Number,
    /// Unix time in seconds (UTC), ticked at calendar boundaries (years, months, days,
    /// hours) and labelled as dates.
    Time,
}

impl XAxis {
    fn is_number(&self) -> bool {
        *self == XAxis::Number
    }
}

/// A labelled vertical line across a line chart at `x` (a fold boundary, an event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// Where, in the x axis's units.
    pub x: f64,
    /// Text drawn beside the line's top.
    pub label: String,
}

/// A chart of one or more series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    /// Caption.
    pub title: String,
    /// Line or bar.
    pub kind: ChartKind,
    /// Label of the x axis, with its unit.
    pub x_label: String,
    /// Label of the y axis, with its unit.
    pub y_label: String,
    /// Logarithmic x axis (only positive x are drawn; ignored on a time axis).
    #[serde(default)]
    pub log_x: bool,
    /// Numbers or dates on the x axis of a line chart; absent in JSON means numbers.
    #[serde(default, skip_serializing_if = "XAxis::is_number")]
    pub x_axis: XAxis,
    /// Logarithmic y axis (only positive y are drawn).
    #[serde(default)]
    pub log_y: bool,
    /// Bar labels, for [`ChartKind::Bar`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// The data. Keep each series to a few thousand points: the chart is an
    /// SVG inside a self-contained HTML page.
    pub series: Vec<Series>,
    /// Vertical lines across a line chart, in x order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub markers: Vec<Marker>,
}

impl Chart {
    /// A line chart with no series yet.
    pub fn line(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Chart {
            title: title.into(),
            kind: ChartKind::Line,
            x_label: x_label.into(),
            y_label: y_label.into(),
            log_x: false,
            log_y: false,
            x_axis: XAxis::Number,
            categories: Vec::new(),
            series: Vec::new(),
            markers: Vec::new(),
        }
    }

    /// A bar chart over `categories` with no series yet.
    pub fn bar(
        title: impl Into<String>,
        y_label: impl Into<String>,
        categories: Vec<String>,
    ) -> Self {
        Chart {
            title: title.into(),
            kind: ChartKind::Bar,
            x_label: String::new(),
            y_label: y_label.into(),
            log_x: false,
            log_y: false,
            x_axis: XAxis::Number,
            categories,
            series: Vec::new(),
            markers: Vec::new(),
        }
    }

    /// A line chart over time: x values are Unix seconds (UTC), drawn as calendar dates.
    pub fn timeline(title: impl Into<String>, y_label: impl Into<String>) -> Self {
        Chart {
            x_axis: XAxis::Time,
            ..Chart::line(title, "date (UTC)", y_label)
        }
    }

    /// Adds a series.
    pub fn with_series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Adds a vertical line at `x` labelled `label`.
    pub fn with_marker(mut self, x: f64, label: impl Into<String>) -> Self {
        self.markers.push(Marker {
            x,
            label: label.into(),
        });
        self
    }
}

/// One named series of `[x, y]` points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// The points; non-finite values are skipped when drawing.
    pub points: Vec<[f64; 2]>,
}

impl Series {
    /// A series from its points.
    pub fn new(name: impl Into<String>, points: Vec<[f64; 2]>) -> Self {
        Series {
            name: name.into(),
            points,
        }
    }

    /// A series of at most `max_points` points picked from `points` by
    /// keeping, in each of `max_points / 2` equal buckets, the minimum and the
    /// maximum y in x order: peaks and troughs (a drawdown's bottom, a
    /// latency spike) survive, which plain striding would drop.
    pub fn downsampled(name: impl Into<String>, points: &[[f64; 2]], max_points: usize) -> Self {
        Series::new(name, downsample(points, max_points))
    }
}

/// Min/max bucket downsampling; see [`Series::downsampled`].
pub fn downsample(points: &[[f64; 2]], max_points: usize) -> Vec<[f64; 2]> {
    let max_points = max_points.max(2);
    if points.len() <= max_points {
        return points.to_vec();
    }
    let buckets = max_points / 2;
    let mut out = Vec::with_capacity(buckets * 2);
    for b in 0..buckets {
        let start = b * points.len() / buckets;
        let end = ((b + 1) * points.len() / buckets).max(start + 1);
        let bucket = &points[start..end];
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in bucket.iter().enumerate() {
            if p[1] < bucket[lo][1] {
                lo = i;
            }
            if p[1] > bucket[hi][1] {
                hi = i;
            }
        }
        let (first, second) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        out.push(bucket[first]);
        if second != first {
            out.push(bucket[second]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsample_keeps_short_series_and_extremes_of_long_ones() {
        let short: Vec<[f64; 2]> = (0..10).map(|i| [i as f64, i as f64]).collect();
        assert_eq!(downsample(&short, 100), short);

        let mut long: Vec<[f64; 2]> = (0..10_000).map(|i| [i as f64, 0.0]).collect();
        long[4_321][1] = -50.0;
        long[7_777][1] = 80.0;
        let small = downsample(&long, 200);
        assert!(small.len() <= 200, "{}", small.len());
        assert!(small.contains(&[4_321.0, -50.0]));
        assert!(small.contains(&[7_777.0, 80.0]));
        assert!(small.windows(2).all(|w| w[0][0] < w[1][0]), "x order kept");
        assert_eq!(small.first(), Some(&[0.0, 0.0]));
    }
}
