//! Reading Prometheus text exposition in tests.

/// The value of `series` (`name{labels}` exactly as exposed) in `metrics`, 0 when absent (a
/// counter nothing has incremented yet is not exposed).
pub fn series_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a metric value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_exact_series_only() {
        let metrics = "# TYPE c counter\nc_total{a=\"x\"} 3\nc_total{a=\"xy\"} 5\n";
        assert_eq!(series_value(metrics, "c_total{a=\"x\"}"), 3.0);
        assert_eq!(series_value(metrics, "c_total{a=\"xy\"}"), 5.0);
        assert_eq!(series_value(metrics, "c_total{a=\"z\"}"), 0.0);
    }
}
