"""jobd: a systemd-native job-processing daemon over a durable SQL queue."""

__version__ = "0.1.0"
