from noiselint.cli import main

main()
