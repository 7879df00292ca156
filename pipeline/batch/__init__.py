"""The nightly batch: find cases, run every configured uncertainty method, store results case by case."""
