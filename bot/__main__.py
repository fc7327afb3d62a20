import sys

from liaison.bot.cli import main

sys.exit(main())
