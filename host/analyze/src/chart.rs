//! Grouped bar charts, as SVG and PNG, with plotters. The study drew bar charts; so do we,
//! with the value printed on each bar so a chart can be read without the table.
//!
//! PNG text is rendered with the DejaVu Sans font embedded in the binary (see
//! `assets/README.md`): plotters' `ab_glyph` backend loads no system fonts, so a machine
//! without any still gets labelled charts. SVG text names the generic `sans-serif` family
//! and is rendered by whatever views it.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Context as _};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const FONT: &str = "sans-serif";
static DEJAVU_SANS: &[u8] = include_bytes!("assets/DejaVuSans.ttf");

/// Bars of one colour, one value per group (`None`: no bar, e.g. a configuration that was
/// not run).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: RGBColor,
    pub values: Vec<Option<f64>>,
}

/// One chart: groups along the x axis, one bar per series in each group.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub y_desc: String,
    pub groups: Vec<String>,
    pub series: Vec<Series>,
    /// Decimals of the value printed above each bar.
    pub decimals: usize,
    /// Appended to values and y tick labels, e.g. `%`.
    pub unit: &'static str,
    /// The largest value the axis must show (100 for shares): bars never go above it.
    pub y_cap: Option<f64>,
}

/// One image: panels stacked vertically (e.g. one per upstream mode).
#[derive(Debug, Clone)]
pub struct Figure {
    pub panels: Vec<Panel>,
    pub width: u32,
    pub panel_height: u32,
}

/// Writes `<stem>.svg` and `<stem>.png`; returns their paths.
pub fn write(figure: &Figure, stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    register_font()?;
    let size = (
        figure.width,
        figure.panel_height * figure.panels.len().max(1) as u32,
    );
    let svg = stem.with_extension("svg");
    draw(SVGBackend::new(&svg, size).into_drawing_area(), figure)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("cannot draw {}", svg.display()))?;
    let png = stem.with_extension("png");
    draw(BitMapBackend::new(&png, size).into_drawing_area(), figure)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("cannot draw {}", png.display()))?;
    Ok(vec![svg, png])
}

fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    ok.then_some(())
        .ok_or_else(|| anyhow!("the embedded chart font could not be loaded"))
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, figure: &Figure) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let areas = root.split_evenly((figure.panels.len().max(1), 1));
    for (area, panel) in areas.iter().zip(&figure.panels) {
        draw_panel(area, panel)?;
    }
    root.present()
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> DrawResult<DB> {
    let groups = p.groups.len().max(1);
    let max = p
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0f64, |m, v| m.max(*v));
    // Head room for the value labels above the bars.
    let top = if max > 0.0 {
        (max * 1.12).min(p.y_cap.unwrap_or(f64::INFINITY) * 1.08)
    } else {
        1.0
    };
    // Font sizes are even on purpose: plotters' ab_glyph backend places each glyph at
    // `size / 2 + top`, truncated, so an odd size misplaces small glyphs such as `.` by
    // a pixel.
    let body = area.margin(10, 0, 0, 0).titled(&p.title, (FONT, 22))?;
    let legend_width = p
        .series
        .iter()
        .map(|s| {
            body.estimate_text_size(&s.name, &legend_style())
                .map_or(200, |(w, _)| w)
        })
        .max()
        .unwrap_or(0)
        + 50;
    let (plot, legend) =
        body.split_horizontally(body.dim_in_pixel().0.saturating_sub(legend_width));
    let mut chart = ChartBuilder::on(&plot)
        .margin(14)
        .x_label_area_size(34)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..groups as f64, 0.0..top)?;
    let y_tick = |y: &f64| format!("{y}{}", p.unit);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&y_tick)
        .y_desc(p.y_desc.as_str())
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 14))
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    // Group names under the axis, centred on each group: plotters places tick labels on
    // "nice" numbers, not on the centres of categories, so they are drawn here instead.
    let (base_x, base_y) = plot.get_base_pixel();
    let name_style = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, name) in p.groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        plot.draw(&Text::new(
            name.as_str(),
            (x - base_x, y - base_y + 8),
            name_style.clone(),
        ))?;
    }

    let slot = 0.8 / p.series.len().max(1) as f64;
    let value_style =
        TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (j, s) in p.series.iter().enumerate() {
        let bars: Vec<(f64, f64)> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i as f64 + 0.1 + j as f64 * slot, v)))
            .collect();
        let color = s.color;
        chart.draw_series(bars.iter().map(|&(x0, v)| {
            Rectangle::new(
                [(x0 + slot * 0.06, 0.0), (x0 + slot * 0.94, v)],
                color.filled(),
            )
        }))?;
        chart.draw_series(bars.iter().map(|&(x0, v)| {
            EmptyElement::at((x0 + slot / 2.0, v))
                + Text::new(
                    format!("{v:.*}{}", p.decimals, p.unit),
                    (0, -3),
                    value_style.clone(),
                )
        }))?;
    }
    draw_legend(&legend, &p.series)
}

fn legend_style() -> TextStyle<'static> {
    TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center))
}

/// The legend beside the plot rather than over it, where it could hide a bar.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> DrawResult<DB> {
    let style = legend_style();
    for (k, s) in series.iter().enumerate() {
        let y = 30 + 26 * k as i32;
        area.draw(&Rectangle::new([(4, y - 7), (18, y + 7)], s.color.filled()))?;
        area.draw(&Text::new(s.name.as_str(), (26, y), style.clone()))?;
    }
    Ok(())
}
