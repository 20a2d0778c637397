"""The service layer the CLI and the console share: every action a user can take (start, list, cancel runs; read
models, datasets and GitOps history; compare, promote, roll back; chat with an endpoint) is one function here, so the
command line and the web console behave the same and hold no business logic of their own."""
