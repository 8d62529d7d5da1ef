//! The dashboard: one page, its script and style, and the charting library it draws cost with
//! (uPlot 1.6.32, MIT, vendored unchanged in `assets/vendor/`, see its README there), all embedded
//! in the binary (no build step, nothing loaded from another origin) and served next to the API
//! they read. The page holds no data: it asks the API with the bearer token typed into its sign-in
//! form, kept in the tab's sessionStorage only (never in the address, which browsers keep in their
//! history), so it shows only what that token may see. The address holds the view alone
//! (`#tenant=NAME&period=DAYS&sort=KEY`: one tenant's page, the period, the order of tenants).

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");
const UPLOT_SCRIPT: &str = include_str!("../assets/vendor/uPlot.iife.min.js");
const UPLOT_STYLE: &str = include_str!("../assets/vendor/uPlot.min.css");

/// Only this origin's script and style, no framing. uPlot sets element styles from its script
/// (the CSS object model), which `style-src 'self'` allows; it uses no inline markup styles.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' blob:; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

/// `/`, `/dashboard.js`, `/dashboard.css` and uPlot's `/vendor/uPlot.iife.min.js` and
/// `/vendor/uPlot.min.css`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    const JS: &str = "text/javascript; charset=utf-8";
    const CSS: &str = "text/css; charset=utf-8";
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/dashboard.js", get(|| async { asset(JS, SCRIPT) }))
        .route("/dashboard.css", get(|| async { asset(CSS, STYLE) }))
        .route("/vendor/uPlot.iife.min.js", get(|| async { asset(JS, UPLOT_SCRIPT) }))
        .route("/vendor/uPlot.min.css", get(|| async { asset(CSS, UPLOT_STYLE) }))
}
