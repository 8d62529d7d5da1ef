//! The unallocated-vs-arrived figure: median over seeds per policy, as in the FGD paper.

use crate::report::Report;
use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;
use std::path::Path;

/// Why the figure was not drawn, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Only SVG is drawn (the one backend built in); said before any work, so a long simulation
    /// does not end without its figure.
    #[error("cannot draw {path}: only SVG output is supported; name the file *.svg")]
    NotSvg { path: String },
    /// Drawing or writing the SVG failed (the file could not be written, most often).
    #[error("cannot draw {path}: {source}")]
    Draw {
        path: String,
        #[source]
        source: DrawingAreaErrorKind<std::io::Error>,
    },
}

/// Checks, before any work, that `path` names a file type we can draw.
pub fn check_target(path: &Path) -> Result<(), PlotError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext != "svg" {
        return Err(PlotError::NotSvg { path: path.display().to_string() });
    }
    Ok(())
}

/// Draws the median curve of every policy in `report` to an SVG file.
pub fn draw_svg(report: &Report, path: &Path) -> Result<(), PlotError> {
    check_target(path)?;
    draw(report, path).map_err(|source| PlotError::Draw { path: path.display().to_string(), source })
}

fn draw(report: &Report, path: &Path) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let ymax = report
        .results
        .iter()
        .flat_map(|r| r.median_curve.iter().map(|&(_, v)| v))
        .fold(5.0f64, f64::max)
        .min(100.0);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Unallocated GPU vs arrived workload — trace {}", report.trace.name),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(75f64..130f64, 0f64..(ymax * 1.05))?;
    chart
        .configure_mesh()
        .x_desc("arrived workload (% of cluster GPU capacity)")
        .y_desc("unallocated GPU (%), median over seeds")
        .draw()?;
    for (i, r) in report.results.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                r.median_curve.iter().map(|&(a, v)| (a as f64, v)),
                color.stroke_width(2),
            ))?
            .label(r.policy.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.9)).draw()?;
    root.present()?;
    Ok(())
}
