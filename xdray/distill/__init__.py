"""Multi-stage distillation: losses, the stage plan and its schedule, and one trial."""
