"""asr_lhuc: LHUC speaker adaptation for SpeechBrain ASR models."""
