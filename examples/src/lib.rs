//! Runnable examples of Aether; see the `[[example]]` targets.
