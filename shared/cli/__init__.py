"""`jobctl`: start the platform, migrate it, check it, and operate it."""
