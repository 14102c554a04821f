"""explainer stage of causalwatch."""
