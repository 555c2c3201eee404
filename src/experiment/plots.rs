//! Line charts with optional ±bands, and maps of the plane (categories per
//! cell), written as SVG and PNG (plotters; the PNG text uses the embedded
//! DejaVu Sans font, so no system fonts needed).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One curve: `(x, y)` points and, optionally, a band `(x, low, high)`,
/// drawn as a shaded area or, with `bars`, as error bars. Without `line`
/// the points are drawn as markers only (a scatter).
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub band: Vec<(f64, f64, f64)>,
    pub line: bool,
    pub bars: bool,
}

/// A chart to draw.
#[derive(Clone, Debug, Default)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_x: bool,
    pub series: Vec<Series>,
    /// Names of evenly spaced x positions `0, 1, …` (a categorical axis);
    /// empty for a numeric one.
    pub x_categories: Vec<String>,
    /// The y range (default: the data's, with a margin).
    pub y_range: Option<(f64, f64)>,
    /// The legend at the top centre (default: the middle of the right edge).
    pub legend_top: bool,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // A failure only means PNG text falls back to nothing; SVG is unaffected.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Write `<stem>.svg` and `<stem>.png`.
pub fn draw(chart: &Chart<'_>, stem: &Path) -> Result<()> {
    draw_panels("", std::slice::from_ref(chart), 1, stem)
}

/// Several charts in one figure, `cols` to a row, under a common `title`;
/// written as `<stem>.svg` and `<stem>.png`.
pub fn draw_panels(title: &str, charts: &[Chart<'_>], cols: usize, stem: &Path) -> Result<()> {
    register_font();
    let rows = charts.len().div_ceil(cols.max(1)).max(1);
    let size = if charts.len() == 1 { (900, 560) } else { (620 * cols as u32, 420 * rows as u32 + 40) };
    let (svg, png) = (stem.with_extension("svg"), stem.with_extension("png"));
    let grid = (rows, cols.max(1));
    render_grid(title, charts, grid, &SVGBackend::new(&svg, size).into_drawing_area(), render)?;
    render_grid(title, charts, grid, &BitMapBackend::new(&png, size).into_drawing_area(), render)
}

/// A white figure under `title`, split into `grid` cells, `one` drawing each
/// item in its cell.
fn render_grid<DB: DrawingBackend, T>(
    title: &str,
    items: &[T],
    grid: (usize, usize),
    area: &DrawingArea<DB, Shift>,
    one: impl Fn(&T, &DrawingArea<DB, Shift>) -> Result<()>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("plotting {title}: {e:?}");
    area.fill(&WHITE).map_err(err)?;
    let body = if title.is_empty() { area.clone() } else { area.titled(title, ("sans-serif", 24)).map_err(err)? };
    for (item, cell) in items.iter().zip(body.split_evenly(grid)) {
        one(item, &cell)?;
    }
    area.present().map_err(err)?;
    Ok(())
}

fn render<DB: DrawingBackend>(chart: &Chart<'_>, area: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("plotting {}: {e:?}", chart.title);
    let all_x = chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let all_y =
        chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.1).chain(s.band.iter().flat_map(|b| [b.1, b.2])));
    let (x0, x1) = match chart.x_categories.len() {
        0 => bounds(all_x),
        n => (-0.5, n as f64 - 0.5),
    };
    let (y0, y1) = chart.y_range.unwrap_or_else(|| {
        let (y0, y1) = bounds(all_y);
        let pad = ((y1 - y0) * 0.05).max(1e-6);
        (y0 - pad, y1 + pad)
    });
    let mut builder = ChartBuilder::on(area);
    builder.caption(chart.title, ("sans-serif", 22)).margin(12).x_label_area_size(45).y_label_area_size(60);
    let x_label = |v: f64| match chart.x_categories.len() {
        0 => tick(v),
        n if (v - v.round()).abs() < 1e-6 && (0.0..n as f64).contains(&v) => {
            chart.x_categories[v.round() as usize].clone()
        }
        _ => String::new(),
    };
    macro_rules! plot_in {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh()
                .light_line_style(TRANSPARENT)
                .x_desc(chart.x_label)
                .y_desc(chart.y_label)
                .x_label_formatter(&|v| x_label(*v))
                .y_label_formatter(&|v| tick(*v))
                .draw()
                .map_err(err)?;
            for (i, s) in chart.series.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                if s.bars {
                    let bars = s.band.iter().map(|&(x, lo, hi)| {
                        ErrorBar::new_vertical(x, lo, (lo + hi) / 2.0, hi, color.stroke_width(1), 8)
                    });
                    ctx.draw_series(bars).map_err(err)?;
                } else if !s.band.is_empty() && s.line {
                    let poly: Vec<(f64, f64)> =
                        s.band.iter().map(|b| (b.0, b.2)).chain(s.band.iter().rev().map(|b| (b.0, b.1))).collect();
                    ctx.draw_series(std::iter::once(Polygon::new(poly, color.mix(0.18)))).map_err(err)?;
                }
                let line: Vec<(f64, f64)> = if s.line { s.points.clone() } else { Vec::new() };
                ctx.draw_series(LineSeries::new(line, color.stroke_width(2)))
                    .map_err(err)?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
                let radius = if s.line { 3 } else { 5 };
                ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, radius, color.filled()))).map_err(err)?;
            }
            let at = if chart.legend_top { SeriesLabelPosition::UpperMiddle } else { SeriesLabelPosition::MiddleRight };
            ctx.configure_series_labels()
                .position(at)
                .border_style(BLACK)
                .background_style(WHITE.mix(0.85))
                .draw()
                .map_err(err)?;
        }};
    }
    if chart.log_x {
        // 1-2-5 ticks per decade: plotters' own log ticks crowd at the top of each decade.
        let x0 = x0.max(1e-9);
        let ticks: Vec<f64> = (-9..10)
            .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
            .filter(|t| (x0..=x1 * 1.05).contains(t))
            .collect();
        let x = (x0..x1 * 1.05).log_scale().with_key_points(ticks);
        plot_in!(builder.build_cartesian_2d(x, y0..y1).map_err(err)?);
    } else {
        plot_in!(builder.build_cartesian_2d(x0..x1.max(x0 + 1e-9), y0..y1).map_err(err)?);
    }
    Ok(())
}

/// A map of the plane: one category per cell of an `nx × ny` grid over
/// `x_range × y_range` (cells row by row from the bottom), drawn in pale
/// colours, with points drawn on top in the full colour of their category.
#[derive(Clone, Debug, Default)]
pub struct Map<'a> {
    pub title: &'a str,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub nx: usize,
    pub ny: usize,
    pub cells: Vec<usize>,
    pub points: Vec<(f64, f64, usize)>,
    /// Names of the categories that occur, for the legend (`(category, name)`).
    pub legend: Vec<(usize, String)>,
}

/// Colour of category `c`: the eight chart colours, then further hues.
fn category_color(c: usize) -> RGBColor {
    if c < PALETTE.len() {
        return PALETTE[c];
    }
    let (r, g, b) = plotters::style::HSLColor(((c * 47) % 360) as f64 / 360.0, 0.65, 0.5).rgb();
    RGBColor(r, g, b)
}

/// Several maps in one figure, `cols` to a row; `<stem>.svg` and `<stem>.png`.
pub fn draw_maps(title: &str, maps: &[Map<'_>], cols: usize, stem: &Path) -> Result<()> {
    register_font();
    let cols = cols.max(1);
    let rows = maps.len().div_ceil(cols).max(1);
    let size = (460 * cols as u32, 460 * rows as u32 + if title.is_empty() { 0 } else { 40 });
    let (svg, png) = (stem.with_extension("svg"), stem.with_extension("png"));
    render_grid(title, maps, (rows, cols), &SVGBackend::new(&svg, size).into_drawing_area(), render_map)?;
    render_grid(title, maps, (rows, cols), &BitMapBackend::new(&png, size).into_drawing_area(), render_map)
}

fn render_map<DB: DrawingBackend>(m: &Map<'_>, cell: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("plotting {}: {e:?}", m.title);
    let ((x0, x1), (y0, y1)) = (m.x_range, m.y_range);
    let mut ctx = ChartBuilder::on(cell)
        .caption(m.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    ctx.configure_mesh()
        .disable_mesh()
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .draw()
        .map_err(err)?;
    let (dx, dy) = ((x1 - x0) / m.nx as f64, (y1 - y0) / m.ny as f64);
    ctx.draw_series(m.cells.iter().enumerate().map(|(k, &c)| {
        let (ix, iy) = ((k % m.nx) as f64, (k / m.nx) as f64);
        let corners = [(x0 + ix * dx, y0 + iy * dy), (x0 + (ix + 1.0) * dx, y0 + (iy + 1.0) * dy)];
        Rectangle::new(corners, category_color(c).mix(0.35).filled())
    }))
    .map_err(err)?;
    ctx.draw_series(m.points.iter().map(|&(x, y, c)| Circle::new((x, y), 3, category_color(c).filled())))
        .map_err(err)?;
    for (c, name) in &m.legend {
        let color = category_color(*c);
        ctx.draw_series(std::iter::empty::<Circle<(f64, f64), u32>>())
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    if !m.legend.is_empty() {
        ctx.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.85)).draw().map_err(err)?;
    }
    Ok(())
}

/// An axis label: integers without a fraction, others to 4 significant digits.
fn tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e12 {
        return format!("{v:.0}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{v:.digits$}").trim_end_matches('0').trim_end_matches('.').to_string()
}

fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        v.filter(|x| x.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if lo.is_finite() { (lo, if hi > lo { hi } else { lo + 1.0 }) } else { (0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::tick;

    #[test]
    fn axis_labels_drop_needless_fractions() {
        assert_eq!(tick(10.0), "10");
        assert_eq!(tick(0.75), "0.75");
        assert_eq!(tick(12.5), "12.5");
        assert_eq!(tick(0.8123456), "0.8123");
        assert_eq!(tick(1e-5), "0.00001");
        assert_eq!(tick(-2.5), "-2.5");
    }
}
