"""Statistics behind every headline number: bootstrap intervals, Bradley-Terry, the length-controlled GLM."""
