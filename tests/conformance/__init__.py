"""The backend-neutral conformance suite: written once against the public interface, run on every backend."""
