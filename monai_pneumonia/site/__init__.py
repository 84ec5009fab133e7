"""The site kit: a hospital measures the model on its own labelled films and fits its own decision rule.

``monai-pneumonia site fit`` (:func:`~monai_pneumonia.site.fit.run_site_fit`) writes the site profile
(:mod:`monai_pneumonia.site_profile`, the one thing the product reads back) and the acceptance report. This
package sits above :mod:`monai_pneumonia.inference`; the product's entry points never import it.
"""

from .acceptance import CALIBRATION_EVENTS, AcceptanceCriteria, films_for_width, verdict
from .fit import MODEL_CARD, SiteSample, classify_site, fit_site, measure_site, read_site_items, run_site_fit
from .rules import AUTO, MIN_FIT_PER_CLASS, RuleFit, cross_validated_decisions, expected_cost, fit_rule, select_rule

__all__ = ["AUTO", "CALIBRATION_EVENTS", "MIN_FIT_PER_CLASS", "MODEL_CARD", "AcceptanceCriteria", "RuleFit",
           "SiteSample", "classify_site", "cross_validated_decisions", "expected_cost", "films_for_width", "fit_rule",
           "fit_site", "measure_site", "read_site_items", "run_site_fit", "select_rule", "verdict"]
