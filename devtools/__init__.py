"""Developer tooling: the local stack (`make run`) and the Firestore emulator wrapper."""
