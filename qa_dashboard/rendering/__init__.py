"""Server-side rendering of the slice browser: map caches, view geometry, pictures, derived analyses."""
