"""Figure functions of the dashboard: pure (data -> plotly Figure or table records), no Dash imports."""

from components.figures.backtest import (
    RANKING_COLUMNS,
    hedge_figure,
    out_of_sample_figure,
    ranking_records,
    stability_figure,
)
from components.figures.compare import compare_records, compare_residuals_figure, compare_smiles_figure
from components.figures.greeks import density_figure, greeks_figure
from components.figures.params import correlation_figure, fit_stats_records, params_records, sensitivity_figure
from components.figures.quality import drops_figure, forwards_figure
from components.figures.residuals import residuals_figure
from components.figures.smiles import smiles_figure
from components.figures.surface import surface_figure
from components.figures.term import term_figure

__all__ = [
    "RANKING_COLUMNS",
    "compare_records",
    "compare_residuals_figure",
    "compare_smiles_figure",
    "correlation_figure",
    "density_figure",
    "drops_figure",
    "fit_stats_records",
    "forwards_figure",
    "greeks_figure",
    "hedge_figure",
    "out_of_sample_figure",
    "params_records",
    "ranking_records",
    "residuals_figure",
    "sensitivity_figure",
    "smiles_figure",
    "stability_figure",
    "surface_figure",
    "term_figure",
]
