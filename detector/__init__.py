"""detector stage of causalwatch."""
