"""Every file cavnet writes goes through ``outputs`` and every text file it reads through ``inputs``;
``terminal`` prints names from the disk safely."""
