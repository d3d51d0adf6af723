package main

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// Shell completion scripts are generated from the usage text, the one
// table of commands and global flags a new command is added to, so they
// cover every command without a list of their own. A command's
// subcommands are listed in subcommands below.

const completionUsage = `Usage: coordinator completion bash|zsh|fish

Prints a completion script for the shell: commands, their subcommands,
global flags and the values of -o/--output. Install it with, e.g.
  bash:  coordinator completion bash > /etc/bash_completion.d/coordinator
         (or: source <(coordinator completion bash) in ~/.bashrc)
  zsh:   coordinator completion zsh > "${fpath[1]}/_coordinator"
  fish:  coordinator completion fish > ~/.config/fish/completions/coordinator.fish`

// subcommands are the words that follow a command.
var subcommands = map[string][]string{
	"dlq":        {"list", "show", "replay", "purge"},
	"jobs":       {"list", "show", "cancel"},
	"schedule":   {"add", "list", "show", "pause", "resume", "delete"},
	"handler":    {"pause", "resume", "limit", "list"},
	"certs":      {"init", "issue", "show"},
	"entities":   {"list", "delete"},
	"completion": {"bash", "zsh", "fish"},
}

type command struct{ name, summary string }

type globalFlag struct {
	name      string // without dashes
	takesArg  bool
	summary   string
	shortName string
}

var (
	commandLine = regexp.MustCompile(`^  ([a-z][a-z-]*)\s+(\S.*)$`)
	flagLine    = regexp.MustCompile(`^  --([a-z][a-z-]*)( [A-Z]+)?\s+(\S.*)$`)
)

// commands are the commands the usage text lists, in its order.
func commands() []command {
	var out []command
	for _, line := range section(usage, "Commands:") {
		if m := commandLine.FindStringSubmatch(line); m != nil {
			out = append(out, command{m[1], m[2]})
		}
	}
	return out
}

// globalFlags are the global flags the usage text lists.
func globalFlags() []globalFlag {
	var out []globalFlag
	for _, line := range section(usage, "Global flags:") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			out = append(out, globalFlag{name: m[1], takesArg: m[2] != "", summary: m[3]})
		}
	}
	return out
}

// section is the lines of text after the line title, up to a blank line.
func section(text, title string) []string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if l != title {
			continue
		}
		var out []string
		for _, l := range lines[i+1:] {
			if strings.TrimSpace(l) == "" {
				break
			}
			out = append(out, l)
		}
		return out
	}
	return nil
}

func completionCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprintln(stderr, completionUsage)
		return nil
	}
	if len(args) != 1 {
		fmt.Fprintln(stderr, completionUsage)
		return usageError{errors.New("completion needs one shell: bash, zsh or fish")}
	}
	var script string
	switch args[0] {
	case "bash":
		script = bashCompletion()
	case "zsh":
		script = zshCompletion()
	case "fish":
		script = fishCompletion()
	default:
		fmt.Fprintln(stderr, completionUsage)
		return usageError{fmt.Errorf("no completion for shell %q: bash, zsh or fish", args[0])}
	}
	_, err := io.WriteString(stdout, script)
	return err
}

func names[T any](xs []T, name func(T) string) string {
	var out []string
	for _, x := range xs {
		out = append(out, name(x))
	}
	return strings.Join(out, " ")
}

func sortedKeys(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// valueFlags are the global flags that take a value, as a case pattern.
func valueFlags(sep string) string {
	var out []string
	for _, f := range globalFlags() {
		if f.takesArg {
			out = append(out, "--"+f.name, "-"+f.name)
		}
	}
	return strings.Join(out, sep)
}

func bashCompletion() string {
	var b strings.Builder
	b.WriteString("# bash completion for coordinator (coordinator completion bash)\n")
	b.WriteString("_coordinator() {\n")
	b.WriteString("  local cur prev w cmd= sub= i\n")
	b.WriteString("  cur=\"${COMP_WORDS[COMP_CWORD]}\"\n")
	b.WriteString("  prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n")
	b.WriteString("  case \"$prev\" in\n")
	b.WriteString("    -o|--output|-output) COMPREPLY=($(compgen -W \"table json\" -- \"$cur\")); return ;;\n")
	fmt.Fprintf(&b, "    %s) COMPREPLY=(); return ;;\n", valueFlags("|"))
	b.WriteString("  esac\n")
	b.WriteString("  for ((i = 1; i < COMP_CWORD; i++)); do\n")
	b.WriteString("    w=\"${COMP_WORDS[i]}\"\n")
	b.WriteString("    case \"$w\" in\n")
	fmt.Fprintf(&b, "      %s) [[ -z $cmd ]] && ((i++)); continue ;;\n", valueFlags("|"))
	b.WriteString("      -*) continue ;;\n")
	b.WriteString("    esac\n")
	b.WriteString("    if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi\n")
	b.WriteString("  done\n")
	b.WriteString("  if [[ -z $cmd ]]; then\n")
	fmt.Fprintf(&b, "    if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); else COMPREPLY=($(compgen -W %q -- \"$cur\")); fi\n",
		names(globalFlags(), func(f globalFlag) string { return "--" + f.name })+" --help",
		names(commands(), func(c command) string { return c.name }))
	b.WriteString("    return\n")
	b.WriteString("  fi\n")
	b.WriteString("  if [[ -z $sub && $cur != -* ]]; then\n")
	b.WriteString("    case \"$cmd\" in\n")
	for _, c := range sortedKeys(subcommands) {
		fmt.Fprintf(&b, "      %s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return ;;\n", c, strings.Join(subcommands[c], " "))
	}
	b.WriteString("    esac\n")
	b.WriteString("  fi\n")
	b.WriteString("  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W \"--output -o --help\" -- \"$cur\")); fi\n")
	b.WriteString("}\n")
	b.WriteString("complete -o default -F _coordinator coordinator\n")
	return b.String()
}

// zshQuote quotes s for a zsh single-quoted word.
func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func zshCompletion() string {
	var b strings.Builder
	b.WriteString("#compdef coordinator\n# zsh completion for coordinator (coordinator completion zsh)\n")
	b.WriteString("_coordinator() {\n")
	b.WriteString("  local -a cmds gflags\n")
	b.WriteString("  local w cmd= sub= i\n")
	b.WriteString("  cmds=(\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "    %s\n", zshQuote(c.name+":"+strings.ReplaceAll(c.summary, ":", `\:`)))
	}
	b.WriteString("  )\n")
	fmt.Fprintf(&b, "  gflags=(%s --help)\n", names(globalFlags(), func(f globalFlag) string { return "--" + f.name }))
	b.WriteString("  case $words[CURRENT-1] in\n")
	b.WriteString("    -o|--output|-output) compadd table json; return ;;\n")
	fmt.Fprintf(&b, "    %s) _default; return ;;\n", valueFlags("|"))
	b.WriteString("  esac\n")
	b.WriteString("  for (( i = 2; i < CURRENT; i++ )); do\n")
	b.WriteString("    w=$words[i]\n")
	b.WriteString("    case $w in\n")
	fmt.Fprintf(&b, "      %s) [[ -z $cmd ]] && (( i++ )); continue ;;\n", valueFlags("|"))
	b.WriteString("      -*) continue ;;\n")
	b.WriteString("    esac\n")
	b.WriteString("    if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi\n")
	b.WriteString("  done\n")
	b.WriteString("  if [[ -z $cmd ]]; then\n")
	b.WriteString("    if [[ $PREFIX == -* ]]; then compadd -a gflags; else _describe 'command' cmds; fi\n")
	b.WriteString("    return\n")
	b.WriteString("  fi\n")
	b.WriteString("  if [[ -z $sub && $PREFIX != -* ]]; then\n")
	b.WriteString("    case $cmd in\n")
	for _, c := range sortedKeys(subcommands) {
		fmt.Fprintf(&b, "      %s) compadd %s; return ;;\n", c, strings.Join(subcommands[c], " "))
	}
	b.WriteString("    esac\n")
	b.WriteString("  fi\n")
	b.WriteString("  if [[ $PREFIX == -* ]]; then compadd -- --output -o --help; else _default; fi\n")
	b.WriteString("}\n")
	b.WriteString("if [[ $zsh_eval_context[-1] == loadautofunc ]]; then _coordinator \"$@\"; else compdef _coordinator coordinator; fi\n")
	return b.String()
}

// fishQuote quotes s for a fish single-quoted word.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func fishCompletion() string {
	var b strings.Builder
	b.WriteString("# fish completion for coordinator (coordinator completion fish)\n")
	all := names(commands(), func(c command) string { return c.name })
	for _, c := range commands() {
		fmt.Fprintf(&b, "complete -c coordinator -f -n 'not __fish_seen_subcommand_from %s' -a %s -d %s\n", all, c.name, fishQuote(c.summary))
	}
	for _, c := range sortedKeys(subcommands) {
		fmt.Fprintf(&b, "complete -c coordinator -f -n '__fish_seen_subcommand_from %s; and not __fish_seen_subcommand_from %s' -a %s\n",
			c, strings.Join(subcommands[c], " "), fishQuote(strings.Join(subcommands[c], " ")))
	}
	for _, f := range globalFlags() {
		arg := ""
		if f.takesArg {
			arg = " -r"
		}
		fmt.Fprintf(&b, "complete -c coordinator -n 'not __fish_seen_subcommand_from %s' -l %s%s -d %s\n", all, f.name, arg, fishQuote(f.summary))
	}
	b.WriteString("complete -c coordinator -s o -l output -x -a 'table json' -d 'output format'\n")
	return b.String()
}
