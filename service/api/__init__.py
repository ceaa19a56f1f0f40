"""HTTP routes: one router per resource. Routes parse, call the engine and return."""
