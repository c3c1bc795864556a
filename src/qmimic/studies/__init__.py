"""The pre-registered study of the method: variants, paired statistics and the study files."""
