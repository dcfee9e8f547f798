"""The bodies of the one-shot commands: doctor, models, prepare, evaluate and predict."""
