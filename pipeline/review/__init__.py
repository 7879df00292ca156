"""The review worklist: budget regions, the sign-off workflow with roles and an audit trail, and the exports."""
