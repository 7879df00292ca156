"""Batch pipeline of the budget-aware uncertainty QA system: inference, metrics and storage."""
