"""The comparison report: metrics, params and curves against a base revision."""
