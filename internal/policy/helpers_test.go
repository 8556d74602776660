package policy

// defaultDir is the policy the repository ships.
const defaultDir = "../../policy"
